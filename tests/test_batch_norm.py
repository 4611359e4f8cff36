"""Batch normalisation: its forward pass against the formulas, its gradients against finite differences,
the running statistics a training step leaves, predictions that do not depend on their batch, the
training loop against a hand loop, and model files that keep it."""

import io

import numpy as np
import pytest
from helpers import synthetic_digits
from PIL import Image

import nn_gpu
from nn_gpu.api import read_digit
from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.batch_norm import EPS, MOMENTUM, normalise, normalise_backward
from nn_gpu.checkpoint import load_model, save_model
from nn_gpu.model import Network
from nn_gpu.training import TrainingPlan, train

IMAGES, LABELS = synthetic_digits(96, seed=2)
X = IMAGES.T  # 784 x 96


def bn_network(cpu, dtype="float64", hidden=(16, 12), seed=0):
    return Network.create(hidden=hidden, device=cpu, seed=seed, dtype=dtype, batch_norm=True)


def test_a_training_forward_pass_normalises_over_the_batch_and_moves_the_running_statistics():
    rng = np.random.default_rng(0)
    Y = rng.normal(3.0, 2.0, (5, 40))
    mean, var = rng.normal(size=(5, 1)), rng.uniform(1, 2, (5, 1))
    before = mean.copy(), var.copy()
    Yhat, s = normalise(Y, mean, var, training=True)
    mu, sigma2 = Y.mean(axis=1, keepdims=True), Y.var(axis=1, keepdims=True)
    np.testing.assert_allclose(Yhat, (Y - mu) / np.sqrt(sigma2 + EPS), rtol=1e-12)
    np.testing.assert_allclose(s, 1 / np.sqrt(sigma2 + EPS), rtol=1e-12)
    np.testing.assert_allclose(mean, (1 - MOMENTUM) * before[0] + MOMENTUM * mu, rtol=1e-12)
    np.testing.assert_allclose(var, (1 - MOMENTUM) * before[1] + MOMENTUM * Y.var(axis=1, ddof=1, keepdims=True))
    kept = mean.copy(), var.copy()
    Yhat, s = normalise(Y, mean, var, training=False)  # evaluation: the running statistics, left as they are
    np.testing.assert_allclose(Yhat, (Y - kept[0]) / np.sqrt(kept[1] + EPS), rtol=1e-12)
    np.testing.assert_array_equal(mean, kept[0])
    np.testing.assert_array_equal(var, kept[1])


def test_the_backward_formula_is_the_gradient_of_the_normalisation():
    rng = np.random.default_rng(1)
    Y, g, dZ = rng.normal(size=(4, 9)), rng.normal(size=(4, 1)), rng.normal(size=(4, 9))

    def loss(Y):  # sum of dZ * (g Yhat): its gradient at Y is normalise_backward's dY
        return float((dZ * g * normalise(Y, np.zeros((4, 1)), np.ones((4, 1)), True)[0]).sum())

    Yhat, s = normalise(Y, np.zeros((4, 1)), np.ones((4, 1)), True)
    dg = np.empty((4, 1))
    dY = normalise_backward(dZ, g, Yhat, s, dg)
    np.testing.assert_allclose(dg, (dZ * Yhat).sum(axis=1, keepdims=True), rtol=1e-12)
    numeric = np.empty_like(Y)
    for i in np.ndindex(Y.shape):
        up, down = Y.copy(), Y.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        numeric[i] = (loss(up) - loss(down)) / 2e-6
    np.testing.assert_allclose(dY, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_gradient_of_a_batch_norm_network_passes_the_gradient_check(cpu, dtype):
    table = nn_gpu.gradcheck(bn_network(cpu, dtype), X, LABELS, entries=60)
    assert table["passed"].all(), table.to_string()
    assert {"g1", "g2"} <= set(table["parameter"])


def test_a_prediction_does_not_depend_on_its_batch(cpu):
    net = bn_network(cpu)
    net.forward(X, keep=True)  # one training step's statistics, so they are not the identity
    whole = net.predict_proba(X)
    alone = np.concatenate([net.predict_proba(X[:, [j]]) for j in range(8)], axis=1)
    np.testing.assert_allclose(whole[:, :8], alone, rtol=1e-12)


def test_the_arrays_and_their_names(cpu):
    net = bn_network(cpu)
    assert net.arch.names == [*"W1 b1 W2 b2 W3 b3 g1 g2".split(), "mean1", "var1", "mean2", "var2"]
    assert net.arch.n_parameters == 784 * 16 + 16 + 16 * 12 + 12 + 12 * 10 + 10 + 16 + 12
    assert net.flat.size == net.arch.n_parameters and net.state.size == net.flat.size + 2 * 28
    np.testing.assert_array_equal(net.g[0], np.ones((16, 1)))
    np.testing.assert_array_equal(net.running[1][0], np.zeros((12, 1)))
    np.testing.assert_array_equal(net.running[1][1], np.ones((12, 1)))
    cache = net.forward(X, keep=True)
    grads = net.backward(cache, LABELS)
    assert {"Yhat1", "s1", "Yhat2", "s2"} <= set(cache) and {"dg1", "dg2", "dY1", "dY2"} <= set(grads)
    with pytest.raises(ValueError, match="params must be W1, b1, W2, b2, W3, b3, g1, g2, mean1"):
        Network(net.arch, cpu, [np.asarray(p) for p in net.params])  # the statistics left out


def test_train_is_a_hand_loop_of_forward_backward_and_step(cpu):
    """Full-batch gradient descent: nn_gpu.train's parameters and running statistics equal a loop of the
    hand API's forward(keep=True), backward and step, bit for bit."""
    hand, looped = bn_network(cpu), bn_network(cpu)
    for _ in range(5):
        hand.step(hand.backward(hand.forward(X, keep=True), LABELS), alpha=0.1)
    plan = TrainingPlan(learning_rate=0.1, iterations=5, log_interval=0)
    train(looped, nn_gpu.optim.SGD(looped), X, LABELS.astype(np.int64), None, plan, evaluate_at_end=False)
    np.testing.assert_array_equal(looped.state, hand.state)
    assert not np.array_equal(looped.running[0][0], 0)


def test_a_batch_over_a_block_runs_whole(cpu):
    """The CPU sums a large batch block by block on threads; batch norm's statistics need the whole batch."""
    images, labels = synthetic_digits(2100, seed=5)
    net = bn_network(cpu, hidden=(8,))
    expected = net.backward(net.forward(images.T, keep=True), labels)
    twin = bn_network(cpu, hidden=(8,))
    twin.gradients(images.T, labels)
    np.testing.assert_allclose(twin.grads[0], expected["dW1"], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(twin.grads[-1], expected["dg1"], rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(twin.statistics[0], net.statistics[0])


def test_a_model_file_keeps_the_scales_and_running_statistics(cpu, tmp_path):
    net = bn_network(cpu)
    net.forward(X, keep=True)
    save_model(tmp_path / "model.npz", net.arch, [np.asarray(a) for a in net.arrays])
    arch, arrays = load_model(tmp_path / "model.npz")
    assert arch == net.arch and arch.batch_norm
    loaded = Network(arch, cpu, arrays)
    np.testing.assert_array_equal(loaded.state, net.state)
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    plain = Architecture((16, 12), "float64")
    save_model(tmp_path / "plain.npz", plain, init_parameters(plain, "he", np.random.default_rng(0)))
    assert not load_model(tmp_path / "plain.npz")[0].batch_norm


def test_the_page_shows_a_prediction_with_the_running_statistics_and_moves_none(cpu, tmp_path):
    from nn_gpu.serve import Demo

    net = bn_network(cpu, hidden=(16,))
    net.forward(X, keep=True)
    save_model(tmp_path / "model.npz", net.arch, [np.asarray(a) for a in net.arrays])
    demo = Demo.load(tmp_path / "model.npz", cpu)
    picture = io.BytesIO()
    Image.fromarray(IMAGES[0].reshape(28, 28)).save(picture, format="PNG")
    before = demo.network.state.copy()
    shown = demo.predict(picture.getvalue())
    np.testing.assert_array_equal(demo.network.state, before)  # a request trains nothing
    cache = demo.network.forward(read_digit(picture.getvalue(), 10**6), keep=True, training=False)
    np.testing.assert_allclose(shown["probabilities"], cache["A2"][:, 0], rtol=1e-6)
    assert len(set(np.round(shown["probabilities"], 6))) > 1  # not the flat output of a batch of one
    with pytest.raises(ValueError, match="backward needs a training step's forward pass"):
        net.backward(net.forward(X, keep=True, training=False), LABELS)
