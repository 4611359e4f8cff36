"""Label smoothing: the gradient of the cross-entropy against smoothed targets, by hand, against
finite differences through the whole network, and against PyTorch's CrossEntropyLoss(label_smoothing)."""

import numpy as np
import pytest
from helpers import synthetic_digits

import nn_gpu
from nn_gpu.ops import REFERENCE_OPS, smooth_labels


def test_smoothed_dZ_is_softmax_minus_the_smoothed_targets():
    Z = np.array([[2.0, -1.0], [0.5, 0.0], [-1.0, 3.0]])  # C = 3 classes, m = 2 samples
    y = np.array([0, 2])
    A = np.exp(Z) / np.exp(Z).sum(axis=0)
    dZ, _, _ = REFERENCE_OPS.softmax_cross_entropy(Z.copy(), y)
    smooth_labels(dZ, y, 0.3)
    targets = np.array([[0.8, 0.1], [0.1, 0.1], [0.1, 0.8]])  # 1 - 0.3 + 0.3 / 3 at the label, 0.3 / 3 elsewhere
    np.testing.assert_allclose(dZ, A - targets, rtol=1e-12)
    np.testing.assert_allclose(dZ.sum(axis=0), 0, atol=1e-12)  # the targets still sum to 1


def test_network_gradients_with_smoothing_are_the_finite_difference_gradients(cpu):
    images, labels = synthetic_digits(30, seed=7)
    X, y = images.T.astype(np.float64) / 255, labels.astype(np.int64)
    net = nn_gpu.Network.create(hidden=(6,), device=cpu, seed=2, dtype="float64")
    for b in net.b:  # away from ReLU's kink
        b += 0.1
    eps = 0.2
    Q = np.full((10, 30), eps / 10)
    Q[y, np.arange(30)] += 1 - eps

    def loss():
        return -np.mean(np.sum(Q * np.log(net.forward(X)), axis=0))

    net.gradients(X, y.astype(np.int32), label_smoothing=eps)
    grads = net.flat_grad.copy()
    rng = np.random.default_rng(0)
    for k in rng.choice(net.flat.size, 40, replace=False):
        saved = net.flat[k]
        net.flat[k] = saved + 1e-6
        up = loss()
        net.flat[k] = saved - 1e-6
        down = loss()
        net.flat[k] = saved
        assert grads[k] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9), k


@pytest.mark.slow
def test_matches_torch_cross_entropy_with_label_smoothing():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    rng = np.random.default_rng(3)
    Z, y = rng.standard_normal((10, 50)), rng.integers(0, 10, 50)
    dZ, _, _ = REFERENCE_OPS.softmax_cross_entropy(Z.copy(), y)
    smooth_labels(dZ, y, 0.1)
    logits = torch.tensor(Z.T, requires_grad=True)
    torch.nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum")(logits, torch.tensor(y)).backward()
    np.testing.assert_allclose(dZ, logits.grad.numpy().T, rtol=1e-10, atol=1e-12)
