"""The update equations: SGD with momentum and weight decay, Adam and AdamW, on known numbers; the schedules."""

import math

import numpy as np
import pytest

from nn_gpu.model import Network
from nn_gpu.ops import REFERENCE_OPS
from nn_gpu.optim import learning_rate, make_optimizer


def sgd(p, g, v, lr, momentum, weight_decay, count=1, done=None):
    """The sgd_update op at learning rate lr: a schedule table of one row, read whatever the step counter."""
    done = np.array([41]) if done is None else done
    REFERENCE_OPS.sgd_update(p, g, v, np.array([[lr]]), done, count, momentum, weight_decay)


def test_sgd_update_on_a_known_step():
    p = np.array([1.0, -2.0, 0.5])
    g = np.array([0.1, 0.2, -0.3])
    v = np.array([0.5, 0.0, -1.0])
    done = np.array([41])
    sgd(p, g, v, lr=0.1, momentum=0.9, weight_decay=0.01, done=done)
    np.testing.assert_array_equal(g, [0.1, 0.2, -0.3])  # the mean of a batch of 1: the gradient itself
    assert done[0] == 42  # the update counts the step
    d = np.array([0.1 + 0.01, 0.2 - 0.02, -0.3 + 0.005])  # d = g + weight_decay p
    v_expected = np.array([0.45, 0.0, -0.9]) + d  # v = momentum v + d
    np.testing.assert_allclose(v, v_expected, rtol=1e-15)
    np.testing.assert_allclose(p, np.array([1.0, -2.0, 0.5]) - 0.1 * v_expected, rtol=1e-15)


def test_the_update_takes_the_mean_of_a_summed_gradient_and_its_steps_row_of_the_table():
    p, g, v = np.array([1.0, 2.0]), np.array([3.0, -6.0]), np.zeros(2)
    rows = np.array([[0.5], [0.1], [0.2]])  # steps 1, 2, 3 of a window of 3 (then 4, 5, 6 ...)
    REFERENCE_OPS.sgd_update(p, g, v, rows, np.array([4]), 3, 0.0, 0.0)  # step 5: row (5 - 1) mod 3 = 1
    np.testing.assert_array_equal(g, [1.0, -2.0])  # g / 3, left in g
    np.testing.assert_allclose(p, [1.0 - 0.1, 2.0 + 0.2], rtol=1e-15)


def test_without_momentum_and_decay_it_is_the_notebooks_update():
    p, g = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    sgd(p, g.copy(), np.zeros(2), lr=0.1, momentum=0.0, weight_decay=0.0)
    np.testing.assert_array_equal(p, [1.0 - 0.05, 2.0 + 0.05])


@pytest.mark.slow
def test_matches_torch_sgd_over_several_steps():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(5)]
    p, v = p0.copy(), np.zeros(20)
    for g in grads:
        sgd(p, g.copy(), v, lr=0.05, momentum=0.9, weight_decay=1e-3)
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


def adam_steps(gradients, p, lr=0.1, weight_decay=0.0, name="adam"):
    """p after Adam (or AdamW) steps with these gradients, through nn_gpu.optim on a one-layer network's flat buffer."""
    net = Network.create(hidden=(1,), device="cpu", dtype="float64")
    net.flat[:] = 0
    net.flat[: len(p)] = p
    optimizer = make_optimizer(name, net, weight_decay=weight_decay)
    for g in gradients:
        net.flat_grad[:] = 0
        net.flat_grad[: len(g)] = g
        optimizer.step(lr)
    return net.flat[: len(p)].copy(), optimizer


P0 = [1.0, -2.0, 0.5]
G1, G2 = [0.1, -0.3, 0.0], [0.1, 0.3, 0.2]


def test_adams_first_step_moves_each_parameter_by_lr_against_its_gradients_sign():
    # m = 0.1 g, v = 0.001 g^2; corrected, m_hat = g and v_hat = g^2: p -= lr g / (|g| + eps)
    p, _ = adam_steps([G1], P0)
    np.testing.assert_allclose(p, [0.9, -1.9, 0.5], rtol=1e-7)  # a zero gradient moves nothing


def test_adams_second_step_by_hand():
    # m = 0.9 (0.01, -0.03, 0) + 0.1 (0.1, 0.3, 0.2) = (0.019, 0.003, 0.02); m_hat = m / 0.19
    # v = 0.999 (1e-5, 9e-5, 0) + 0.001 (0.01, 0.09, 0.04) = (1.999e-5, 1.7991e-4, 4e-5); v_hat = v / 0.001999
    # p -= 0.1 m_hat / sqrt(v_hat) = 0.1 (0.1 / 0.1, 0.0157895 / 0.3, 0.1052632 / 0.1414567)
    p, optimizer = adam_steps([G1, G2], P0)
    np.testing.assert_allclose(
        p, [0.8, -1.9 - 0.1 * (0.003 / 0.19) / 0.3, 0.5 - 0.1 * (0.02 / 0.19) / np.sqrt(4e-5 / 0.001999)], rtol=1e-7
    )
    np.testing.assert_allclose(optimizer.m[:3], [0.019, 0.003, 0.02], rtol=1e-12)
    np.testing.assert_allclose(optimizer.v[:3], [1.999e-5, 1.7991e-4, 4e-5], rtol=1e-12)


def test_adam_decays_through_the_gradient_and_adamw_decouples_it():
    p, _ = adam_steps([G1], P0, weight_decay=0.1, name="adam")  # d = g + 0.1 p = (0.2, -0.5, 0.05)
    np.testing.assert_allclose(p, [0.9, -1.9, 0.4], rtol=1e-7)
    p, _ = adam_steps([G1], P0, weight_decay=0.1, name="adamw")  # p := (1 - 0.01) p, then the Adam step on g
    np.testing.assert_allclose(p, [0.99 - 0.1, -1.98 + 0.1, 0.495], rtol=1e-7)


def test_adam_resumed_from_its_state_goes_on_as_if_never_stopped():
    straight, _ = adam_steps([G1, G2, G1], P0)
    p, first = adam_steps([G1], P0)
    net = Network.create(hidden=(1,), device="cpu", dtype="float64")
    net.flat[:] = 0
    net.flat[:3] = p
    resumed = make_optimizer("adam", net, state=[s.copy() for s in first.state], steps=1)
    for g in (G2, G1):
        net.flat_grad[:] = 0
        net.flat_grad[:3] = g
        resumed.step(0.1)
    np.testing.assert_array_equal(net.flat[:3], straight)


def test_an_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop': choose one of sgd, adam, adamw"):
        make_optimizer("rmsprop", Network.create(hidden=(1,), device="cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_matches_torch_adam_and_adamw_over_several_steps(name):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(6)]
    p, _ = adam_steps(grads, p0, lr=0.01, weight_decay=0.05, name=name)
    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]([tp], lr=0.01, weight_decay=0.05)
    for g in grads:
        tp.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12)
