"""Dropout: the backward pass against finite differences with the mask held fixed, the masks themselves,
and dropout off wherever the network is not training."""

import numpy as np
import pytest
from helpers import hand_iteration, synthetic_digits

import nn_gpu
from nn_gpu.dropout import Dropout, layer_rates, masks


def loss_with(net, X, y, M):
    """The mean cross-entropy of a forward pass with the masks M held fixed."""
    A_L = net.forward(X, masks=M)
    return -np.mean(np.log(A_L[y, np.arange(len(y))]))


@pytest.mark.parametrize("rates", [(0.2, 0.5), (0.0, 0.5, 0.3), (0.5, 0.0)])
def test_backward_with_a_fixed_mask_is_the_finite_difference_gradient(cpu, rates):
    images, labels = synthetic_digits(40, seed=3)
    X, y = images.T.astype(np.float64) / 255, labels.astype(np.int64)
    net = nn_gpu.Network.create(hidden=(7, 6), device=cpu, seed=1, dtype="float64")
    for b in net.b:  # not 0: a sample whose units below are all dropped would sit on ReLU's kink, Z = b = 0
        b += np.random.default_rng(2).uniform(0.05, 0.2, b.shape)
    M = masks(layer_rates(rates, 2), net.arch.sizes, 40, seed=0, iteration=1, device=cpu, dtype="float64")
    cache = net.forward(X, keep=True, masks=M)
    grads = net.backward(cache, y)
    rng = np.random.default_rng(0)
    h = 1e-6
    for name, p in zip(net.parameter_names, net.params):
        for index in map(tuple, rng.integers(0, p.shape, size=(6, 2))):
            saved = p[index]
            p[index] = saved + h
            up = loss_with(net, X, y, M)
            p[index] = saved - h
            down = loss_with(net, X, y, M)
            p[index] = saved
            assert grads[f"d{name}"][index] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9), (name, index)


def test_the_masks_are_kept_in_the_cache_and_scale_what_they_keep(cpu):
    M = masks((0.25, 0.5, 0.5), (784, 300, 200, 10), 1000, seed=4, iteration=9, device=cpu, dtype="float32")
    for mask, p in zip(M, (0.25, 0.5)):
        assert mask.dtype == np.float32
        assert set(np.unique(mask)) == {0.0, np.float32(1 / (1 - p))}
        assert (mask == 0).mean() == pytest.approx(p, abs=0.01)
    net = nn_gpu.Network.create(hidden=(300, 200), device=cpu, seed=0)
    X = synthetic_digits(1000)[0].T
    cache = net.forward(X, keep=True, masks=M)
    assert [name for name in cache if name.startswith("M")] == ["M0", "M1", "M2"]
    assert np.all(cache["A1"][M[1] == 0] == 0) and np.all(cache["A2"][M[2] == 0] == 0)
    assert "dropout mask" in repr(cache)


def test_masks_come_from_seed_and_iteration_alone(cpu):
    def draw(seed, iteration):
        return masks((0.2, 0.5), (784, 64, 10), 32, seed, iteration, cpu, "float32")

    np.testing.assert_array_equal(draw(0, 5)[1], draw(0, 5)[1])
    assert not np.array_equal(draw(0, 5)[1], draw(0, 6)[1])
    assert not np.array_equal(draw(0, 5)[1], draw(1, 5)[1])
    assert masks((0.0, 0.0), (784, 64, 10), 32, 0, 1, cpu, "float32") is None
    assert masks((0.0, 0.5), (784, 64, 10), 32, 0, 1, cpu, "float32")[0] is None


def test_layer_rates_repeat_the_last_hidden_rate():
    assert layer_rates((0.2, 0.5), 3) == (0.2, 0.5, 0.5, 0.5)
    assert layer_rates((0.2, 0.5, 0.1), 2) == (0.2, 0.5, 0.1)
    assert layer_rates(None, 2) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="3 dropout rates for 1 hidden layers"):
        layer_rates((0.1, 0.2, 0.3), 1)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\)"):
        layer_rates((0.1, 1.0), 1)


@pytest.mark.parametrize("m", [300, 2500], ids=["one block", "blocks"])
def test_a_training_steps_masks_drawn_in_its_ops_are_the_masks_a_learner_sees(cpu, m):
    """gradients() with a step's Dropout draws each mask inside the ops, block by block for a batch of 2,500
    (blocks of 1,024 on worker threads, each with its own columns of the masks); forward and backward with
    the masks of dropout.masks, made whole on the host, give the same gradients."""
    images, labels = synthetic_digits(m, seed=5)
    net = nn_gpu.Network.create(hidden=(20, 12), device=cpu, seed=0, dtype="float64")
    rates = (0.2, 0.5, 0.3)
    X = images.T.astype(np.float64) / 255
    net.gradients(X, labels.astype(np.int32), Dropout.at(rates, seed=3, step=7, xp=np, dtype="float64"))
    drawn = net.flat_grad.copy()
    M = masks(rates, net.arch.sizes, m, seed=3, iteration=7, device=cpu, dtype="float64")
    grads = net.backward(net.forward(X, keep=True, masks=M), labels)  # one whole batch, the masks held
    np.testing.assert_allclose(drawn, np.concatenate([grads[f"d{n}"].ravel() for n in net.parameter_names]), rtol=1e-10)
    net.gradients(X, labels.astype(np.int32), Dropout.at(rates, seed=3, step=8, xp=np, dtype="float64"))
    assert not np.allclose(net.flat_grad, drawn)  # another step, other masks


def test_dropout_is_off_at_evaluation_and_prediction(cpu):
    images, labels = synthetic_digits(300, seed=6)
    X, y = images.T / 255, labels.astype(np.int64)  # float pixels: the very array training reads, and dev
    pixels = X.copy()
    net = nn_gpu.Network.create(hidden=(32,), device=cpu, seed=0, dtype="float64")
    progress = nn_gpu.train(net, X, y, iterations=20, dropout=(0.2, 0.5), dev=(X, y), log_interval=10, log=None)
    np.testing.assert_array_equal(X, pixels)  # the inputs' masks were applied to a copy
    A_L = hand_iteration(net.params, pixels, y)[0]["A2"]  # the forward pass by the equations: no mask
    loss, accuracy = -np.mean(np.log(A_L[y, np.arange(300)])), np.mean(A_L.argmax(axis=0) == y)
    np.testing.assert_allclose(net.predict_proba(X), A_L, rtol=1e-12)
    assert progress.final["dev_loss"] == progress.history[-1]["dev_loss"] == pytest.approx(loss, rel=1e-12)
    assert progress.final["train_loss"] == pytest.approx(loss, rel=1e-12)
    assert progress.final["dev_accuracy"] == progress.history[-1]["dev_accuracy"] == accuracy
    assert net.evaluate(X, y) == pytest.approx((loss, accuracy), rel=1e-12)


def test_training_with_dropout_differs_from_training_without(cpu):
    images, labels = synthetic_digits(300, seed=6)
    nets = [nn_gpu.Network.create(hidden=(32,), device=cpu, seed=0) for _ in range(3)]
    for net, rates in zip(nets, (None, (0.0, 0.5), (0.0, 0.5))):
        nn_gpu.train(net, images.T, labels, epochs=1, dropout=rates, log=None)
    assert not np.array_equal(nets[0].flat, nets[1].flat)
    np.testing.assert_array_equal(nets[1].flat, nets[2].flat)  # the same seed: the same masks
