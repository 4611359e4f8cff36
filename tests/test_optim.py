"""The update equations: SGD with momentum and weight decay on known numbers, and the schedules."""

import math

import numpy as np
import pytest

from nn_gpu.ops import REFERENCE_OPS
from nn_gpu.optim import learning_rate


def test_sgd_update_on_a_known_step():
    p = np.array([1.0, -2.0, 0.5])
    g = np.array([0.1, 0.2, -0.3])
    v = np.array([0.5, 0.0, -1.0])
    REFERENCE_OPS.sgd_update(p, g, v, lr=0.1, momentum=0.9, weight_decay=0.01)
    np.testing.assert_array_equal(g, [0.1, 0.2, -0.3])  # read, never written: the CUDA kernel's contract too
    d = np.array([0.1 + 0.01, 0.2 - 0.02, -0.3 + 0.005])  # d = g + weight_decay p
    v_expected = np.array([0.45, 0.0, -0.9]) + d  # v = momentum v + d
    np.testing.assert_allclose(v, v_expected, rtol=1e-15)
    np.testing.assert_allclose(p, np.array([1.0, -2.0, 0.5]) - 0.1 * v_expected, rtol=1e-15)


def test_without_momentum_and_decay_it_is_the_notebooks_update():
    p, g = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    REFERENCE_OPS.sgd_update(p, g.copy(), np.zeros(2), lr=0.1, momentum=0.0, weight_decay=0.0)
    np.testing.assert_array_equal(p, [1.0 - 0.05, 2.0 + 0.05])


@pytest.mark.slow
def test_matches_torch_sgd_over_several_steps():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(5)]
    p, v = p0.copy(), np.zeros(20)
    for g in grads:
        REFERENCE_OPS.sgd_update(p, g.copy(), v, lr=0.05, momentum=0.9, weight_decay=1e-3)
    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.SGD([tp], lr=0.05, momentum=0.9, weight_decay=1e-3)
    for g in grads:
        tp.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12)


def test_schedules():
    assert [learning_rate("constant", 0.1, i, 100) for i in (1, 50, 100)] == [0.1] * 3
    steps = [learning_rate("step", 0.1, i, 100) for i in (1, 50, 51, 75, 76, 100)]
    assert steps == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cosine = [learning_rate("cosine", 0.1, i, 100) for i in (1, 51, 100)]
    assert cosine == pytest.approx([0.1, 0.05, 0.05 * (1 + math.cos(math.pi * 0.99))])
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        learning_rate("linear", 0.1, 1, 10)
