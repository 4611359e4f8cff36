"""The network's equations: gradients against finite differences in float64, shapes, updates."""

import numpy as np
import pytest

from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.model import Network, scale_pixels
from nn_gpu.optim import SGD


def make_network(cpu, hidden, m, seed=0, dtype="float64"):
    """A network and a batch whose hidden pre-activations all keep |Z| > 1e-3 (away from ReLU's kink)."""
    rng = np.random.default_rng(seed)
    arch = Architecture(hidden, dtype)
    for _ in range(100):
        network = Network(arch, cpu, init_parameters(arch, "he", rng))
        for b in network.b:
            b += rng.uniform(-0.1, 0.1, size=b.shape)  # nonzero biases, so their gradients are tested
        X = rng.random((784, m))
        y = rng.integers(0, 10, size=m)
        cache = network.forward(X, keep=True)
        if all(np.abs(cache[f"Z{l}"]).min() > 1e-3 for l in range(1, len(hidden) + 1)):  # the hidden Z_l
            return network, X, y
    raise AssertionError("no batch away from the ReLU kink")


def mean_loss(network, X, y):
    loss, _ = network.evaluate(X, y)
    return loss


def finite_difference(network, X, y, p, eps=1e-6):
    """d mean_loss / d p by central differences, element by element."""
    grad = np.zeros_like(p)
    for index in np.ndindex(p.shape):
        saved = p[index]
        p[index] = saved + eps
        up = mean_loss(network, X, y)
        p[index] = saved - eps
        down = mean_loss(network, X, y)
        p[index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize(("hidden", "m"), [((10,), 1), ((10,), 16), ((7,), 33), ((5, 4), 9), ((6, 5, 4), 12)])
def test_gradients_match_finite_differences(cpu, hidden, m):
    network, X, y = make_network(cpu, hidden, m)
    network.gradients(X, y)
    grads = [g.copy() for g in network.grads]
    rng = np.random.default_rng(1)
    for p, dp in zip(network.params, grads):
        assert dp.shape == p.shape and dp.dtype == p.dtype
        if p.size > 60:  # W1 has 7,840 entries: check a random block of columns (pixels) of it
            cols = rng.choice(p.shape[1], size=6, replace=False)
            view = p[:, cols].copy()
            numeric = np.empty_like(view)
            for j, c in enumerate(cols):
                column = p[:, c : c + 1]
                numeric[:, j : j + 1] = finite_difference(network, X, y, column)
            analytic = dp[:, cols]
        else:
            numeric, analytic = finite_difference(network, X, y, p), dp
        error = np.abs(analytic - numeric).max() / max(np.abs(numeric).max(), 1e-12)
        assert error < 1e-6, f"relative error {error:.2e} for a parameter of shape {p.shape}"


def test_db_is_a_per_unit_sum_not_the_notebooks_scalar(cpu):
    network, X, y = make_network(cpu, (10,), 32)
    network.gradients(X, y)
    grads = network.grads
    db2_numeric = finite_difference(network, X, y, network.b[1])
    np.testing.assert_allclose(grads[3], db2_numeric, rtol=1e-6, atol=1e-9)
    # The notebook's db2 = np.sum(dZ2) / m adds every unit together into one scalar, which is 0 here
    # (each column of A2 - Y sums to 0) and wrong for every unit.
    Z = network.forward(X, keep=True)["Z2"]
    dZ2, _, _ = cpu.ops.softmax_cross_entropy(Z, y)
    notebook_db2 = np.sum(dZ2) / 32
    assert abs(notebook_db2) < 1e-12
    assert np.abs(db2_numeric).max() > 1e-3


def test_init_shapes_follow_the_brief():
    arch = Architecture((10,), "float32")
    W1, b1, W2, b2 = init_parameters(arch, "uniform", np.random.default_rng(0))
    assert (W1.shape, b1.shape, W2.shape, b2.shape) == ((10, 784), (10, 1), (10, 10), (10, 1))
    assert all(p.dtype == np.float32 for p in (W1, b1, W2, b2))
    assert W1.min() >= -0.5 and W1.max() < 0.5 and b1.min() < 0  # U(-0.5, 0.5), biases too
    he = init_parameters(Architecture((256, 128)), "he", np.random.default_rng(0))
    assert [p.shape for p in he] == [(256, 784), (256, 1), (128, 256), (128, 1), (10, 128), (10, 1)]
    assert he[0].std() == pytest.approx(np.sqrt(2 / 784), rel=0.02)
    assert not he[1].any()
    with pytest.raises(ValueError, match="unknown init"):
        init_parameters(arch, "zeros", np.random.default_rng(0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_descent_step_keeps_dtype_and_goes_downhill(cpu, dtype):
    network, X, y = make_network(cpu, (10,), 20, dtype=dtype)
    X = X.astype(dtype)
    before = [p.copy() for p in network.params]
    loss_sum, _ = network.gradients(X, y)
    grads = [g.copy() for g in network.grads]
    SGD(network).step(0.01)
    for p, p0, dp in zip(network.params, before, grads):
        assert p.dtype == dtype
        np.testing.assert_allclose(p, p0 - 0.01 * dp, rtol=1e-6)
    assert mean_loss(network, X, y) < loss_sum / 20  # a small step downhill lowers the loss


def test_parameters_and_gradients_are_views_of_one_flat_buffer(cpu):
    network, X, y = make_network(cpu, (6, 5), 8)
    assert all(np.shares_memory(p, network.flat) for p in network.params)
    assert all(np.shares_memory(g, network.flat_grad) for g in network.grads)
    assert network.flat.size == sum(p.size for p in network.params) == 784 * 6 + 6 + 6 * 5 + 5 + 5 * 10 + 10


def test_evaluate_in_batches_equals_one_batch(cpu):
    network, X, y = make_network(cpu, (10,), 50)
    whole = network.evaluate(X, y, batch_size=50)
    pieces = network.evaluate(X, y, batch_size=7)
    assert pieces == pytest.approx(whole, rel=1e-12)
    probs = network.predict_proba(X, batch_size=7)
    assert probs.shape == (10, 50)
    np.testing.assert_allclose(probs.sum(axis=0), 1)
    assert np.mean(probs.argmax(axis=0) == y) == pytest.approx(whole[1])


def test_uint8_pixels_train_exactly_as_pixels_scaled_first(cpu):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(30, 784)).astype(np.uint8)
    y = rng.integers(0, 10, size=30)
    arch = Architecture((8,), "float32")
    network = Network(arch, cpu, init_parameters(arch, "he", rng))
    network.runner.block_samples = 8
    sums = network.gradients(images.T, y)
    from_pixels = network.flat_grad.copy()
    scaled = (images.astype(np.float32) / 255).T
    assert network.gradients(scaled, y) == sums
    assert np.array_equal(network.flat_grad, from_pixels)
    assert np.array_equal(scale_pixels(images.T, "float32"), scaled)
