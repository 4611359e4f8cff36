"""Many networks at once (nn_gpu.stacked, nn_gpu.many): network k of a group against the same network
trained alone by nn_gpu.training.train on the same batches, and the groups, the limits and the grid."""

from __future__ import annotations

import numpy as np
import pytest

from nn_gpu import many, training
from nn_gpu.data import load_dataset
from nn_gpu.errors import NNGpuError
from nn_gpu.model import Network
from nn_gpu.optim import make_optimizer
from nn_gpu.stacked import Setting

TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
SHUFFLE = 5


@pytest.fixture(scope="module")
def digits():
    train, dev = load_dataset("sample").split(500, seed=0)
    return train.X[:, :1500], train.y[:1500], dev.X, dev.y


def alone(setting: Setting, X, y, hidden, dtype, optimizer, momentum, **plan) -> Network:
    """The network of `setting` trained alone, on the group's shuffles, its dropout masks from its own seed."""
    net = Network.create(hidden, "cpu", setting.seed, "he", dtype)
    opt = make_optimizer(optimizer, net, momentum, setting.weight_decay)
    plan = training.TrainingPlan(
        learning_rate=setting.learning_rate, dropout=setting.dropout, label_smoothing=setting.label_smoothing, **plan
    )
    training.train(
        net, opt, X, y.astype(np.int64), None, plan, seed=SHUFFLE, dropout_seed=setting.seed, evaluate_at_end=False
    )
    return net


SETTINGS = {
    "plain": [Setting(0, 0.05), Setting(1, 0.1), Setting(2, 0.02)],
    "weight decay": [Setting(0, 0.05, 0.01), Setting(1, 0.1, 0.0), Setting(2, 0.05, 0.05)],
    "dropout": [Setting(0, 0.05, 0, (0.2, 0.5)), Setting(1, 0.1), Setting(2, 0.05, 0, (0.0, 0.3))],
    "label smoothing": [Setting(0, 0.05, 0, None, 0.1), Setting(1, 0.1), Setting(2, 0.05, 0, None, 0.2)],
}
RATE = {"sgd": 1.0, "adam": 0.02, "adamw": 0.02}  # a learning rate of SETTINGS, scaled for the optimiser


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("kind", list(SETTINGS))
def test_each_network_of_a_group_is_the_network_trained_alone(digits, kind, optimizer, dtype):
    X, y, _, _ = digits
    settings = [s._replace(learning_rate=s.learning_rate * RATE[optimizer]) for s in SETTINGS[kind]]
    momentum = 0.9 if optimizer == "sgd" else 0.0
    shared = dict(iterations=100, batch_size=128, lr_schedule="cosine")
    results = many.train_many(
        X, y, settings, hidden=(24, 12), device="cpu", dtype=dtype, optimizer=optimizer, momentum=momentum,
        shuffle_seed=SHUFFLE, log=None, **shared,
    )  # fmt: skip
    flats = [r.network.flat for r in results]
    for k, setting in enumerate(settings):
        expected = alone(setting, X, y, (24, 12), dtype, optimizer, momentum, **shared).flat
        np.testing.assert_allclose(flats[k], expected, rtol=0, atol=TOLERANCE[dtype], err_msg=f"network {k}")
    assert np.abs(flats[0] - flats[2]).max() > 1e-3  # the networks differ: each took its own settings


def test_full_batch_epochs_and_the_notebooks_network(digits):
    X, y, _, _ = digits
    settings = many.grid(seeds=[3, 4], learning_rate=[0.1, 0.2])
    results = many.train_many(
        X, y, settings, device="cpu", dtype="float64", iterations=30, shuffle_seed=SHUFFLE, log=None
    )
    for setting, result in zip(settings, results):
        expected = alone(setting, X, y, (10,), "float64", "sgd", 0.0, iterations=30)
        np.testing.assert_allclose(result.network.flat, expected.flat, rtol=0, atol=1e-12)
    epochs = many.train_many(
        X, y, settings[:1], device="cpu", dtype="float64", epochs=2, batch_size=100, shuffle_seed=SHUFFLE, log=None
    )
    expected = alone(settings[0], X, y, (10,), "float64", "sgd", 0.0, epochs=2, batch_size=100)
    np.testing.assert_allclose(epochs[0].network.flat, expected.flat, rtol=0, atol=1e-12)
    assert [e["epoch"] for e in epochs[0].history] == [1.0, 2.0]


def test_each_network_keeps_its_best_and_stops_by_its_own_patience(digits):
    X, y, X_dev, y_dev = digits
    settings = [Setting(0, 0.5), Setting(1, 5.0), Setting(2, 0.05)]  # the second one overshoots
    results = many.train_many(
        X, y, settings, device="cpu", dtype="float64", iterations=120, batch_size=50, log_interval=5,
        early_stopping=3, dev=(X_dev, y_dev), shuffle_seed=SHUFFLE, log=None,
    )  # fmt: skip
    for setting, result in zip(settings, results):
        net = Network.create((10,), "cpu", setting.seed, "he", "float64")
        plan = training.TrainingPlan(
            learning_rate=setting.learning_rate, iterations=120, batch_size=50, log_interval=5, early_stopping=3
        )
        progress = training.train(
            net, make_optimizer("sgd", net), X, y.astype(np.int64), (X_dev, y_dev.astype(np.int64)), plan,
            seed=SHUFFLE, evaluate_at_end=False,
        )  # fmt: skip
        assert result.stopped_early == progress.stopped_early
        assert (result.best_iteration, result.best_dev_accuracy) == (
            progress.best_iteration,
            progress.best_dev_accuracy,
        )
        assert [e["dev_accuracy"] for e in result.history] == [e["dev_accuracy"] for e in progress.history]
        np.testing.assert_allclose(result.model.flat, progress.best_params, rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.network.flat, net.flat, rtol=0, atol=1e-12)
    assert any(r.stopped_early for r in results) and not all(r.stopped_early for r in results)


def test_a_diverging_network_stops_alone(digits):
    X, y, X_dev, y_dev = digits
    settings = [Setting(0, 0.1), Setting(0, 1e6)]
    results = many.train_many(X, y, settings, device="cpu", iterations=40, batch_size=100, dev=(X_dev, y_dev), log=None)
    assert [r.diverged for r in results] == [False, True]
    assert results[0].history[-1]["iteration"] == 40 and results[1].history[-1]["iteration"] < 40
    assert results[0].best_dev_accuracy > 0.5
    assert np.isfinite(results[1].model.flat).all()  # its best before it went bad


def test_a_group_too_large_is_split_into_groups_that_fit_with_the_same_networks(digits):
    X, y, _, _ = digits
    settings = many.grid(seeds=range(5))
    per_network = many.network_bytes(Network.create((10,), "cpu", dtype="float64").arch, "sgd", 100)
    lines = []
    kwargs = dict(device="cpu", dtype="float64", iterations=20, batch_size=100, shuffle_seed=SHUFFLE)
    split = many.train_many(
        X, y, settings, memory=int(2.5 * per_network / many.MEMORY_SHARE), log=lines.append, **kwargs
    )
    assert lines[0].startswith("5 networks need ") and lines[0].endswith("training them in 3 groups of up to 2")
    whole = many.train_many(X, y, settings, log=None, **kwargs)
    for a, b in zip(split, whole):
        np.testing.assert_allclose(a.network.flat, b.network.flat, rtol=0, atol=1e-12)


def test_group_sizes_and_the_limit_named():
    assert many.group_sizes(64, 10, 1000, "the card") == [64]
    assert many.group_sizes(7, 10, 30 / many.MEMORY_SHARE, "the card") == [3, 2, 2]
    with pytest.raises(
        NNGpuError, match=r"one network needs 0\.00 GB for training, more than the 0\.00 GB cpu can give"
    ):
        many.group_sizes(1, 1000, 100, "cpu")
    arch = Network.create((128,), "cpu").arch
    sgd, adam = many.network_bytes(arch, "sgd", 128), many.network_bytes(arch, "adam", 128)
    assert adam - sgd == 4 * arch.n_parameters  # one more moment, float32
    assert sgd >= 4 * 5 * arch.n_parameters


def test_grid_is_every_combination_with_seeds_fastest():
    settings = many.grid(seeds=range(2), learning_rate=[0.1, 0.2], dropout=[None, (0.2, 0.5)], label_smoothing=0.1)
    assert len(settings) == 8
    assert settings[:3] == [
        Setting(0, 0.1, 0.0, None, 0.1), Setting(1, 0.1, 0.0, None, 0.1), Setting(0, 0.1, 0.0, (0.2, 0.5), 0.1)
    ]  # fmt: skip
    assert settings[-1] == Setting(1, 0.2, 0.0, (0.2, 0.5), 0.1)
    assert many.grid(seeds=[4], dropout=(0.2, 0.5)) == [Setting(4, 0.1, 0.0, (0.2, 0.5), 0.0)]


def test_a_stack_refuses_what_it_cannot_stack():
    from nn_gpu.stacked import Stack

    a, b = Network.create((10,), "cpu"), Network.create((12,), "cpu")
    with pytest.raises(ValueError, match="one architecture"):
        Stack([a, b], [Setting(), Setting()])
    norm = Network.create((10,), "cpu", batch_norm=True)
    with pytest.raises(ValueError, match="batch norm cannot be stacked"):
        Stack([norm], [Setting()])


def test_evaluate_is_each_networks_own(digits):
    _, _, X_dev, y_dev = digits
    from nn_gpu.stacked import Stack

    nets = [Network.create((16,), "cpu", seed, dtype="float64") for seed in range(3)]
    losses, accuracies = Stack(nets, [Setting()] * 3).evaluate(X_dev, y_dev.astype(np.int64), batch_size=200)
    for net, loss, accuracy in zip(nets, losses, accuracies):
        assert (loss, accuracy) == pytest.approx(net.evaluate(X_dev, y_dev), rel=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_each_network_of_a_group_on_the_card_is_the_network_trained_alone_there(digits, optimizer):
    X, y, _, _ = digits
    settings = [Setting(0, 0.05 * RATE[optimizer], 0.01, (0.2, 0.5), 0.1), Setting(1, 0.1 * RATE[optimizer])]
    shared = dict(iterations=100, batch_size=128)
    results = many.train_many(
        X, y, settings, hidden=(24,), device="gpu", dtype="float64", optimizer=optimizer, shuffle_seed=SHUFFLE,
        log=None, **shared,
    )  # fmt: skip
    for setting, result in zip(settings, results):
        net = Network.create((24,), "gpu", setting.seed, "he", "float64")
        opt = make_optimizer(optimizer, net, 0.0, setting.weight_decay)
        plan = training.TrainingPlan(
            learning_rate=setting.learning_rate, dropout=setting.dropout, label_smoothing=setting.label_smoothing,
            **shared,
        )  # fmt: skip
        X_card, y_card = net.inputs(X), net.device.to_device(y.astype(np.int32))
        training.train(
            net, opt, X_card, y_card, None, plan, seed=SHUFFLE, dropout_seed=setting.seed, evaluate_at_end=False
        )
        np.testing.assert_allclose(
            result.network.device.to_host(result.network.flat), net.device.to_host(net.flat), rtol=0, atol=1e-12
        )


@pytest.mark.gpu
def test_sixty_four_networks_at_once_on_the_card_network_0_is_a_lone_run(digits):
    X, y, _, _ = digits
    settings = many.grid(seeds=range(16), learning_rate=[0.02, 0.05, 0.1, 0.2])
    results = many.train_many(
        X, y, settings, hidden=(128,), device="gpu", dtype="float64", iterations=50, batch_size=128,
        shuffle_seed=0, log=None,
    )  # fmt: skip
    assert len(results) == 64
    net = Network.create((128,), "gpu", 0, "he", "float64")
    plan = training.TrainingPlan(learning_rate=0.02, iterations=50, batch_size=128)
    X_card, y_card = net.inputs(X), net.device.to_device(y.astype(np.int32))
    training.train(net, make_optimizer("sgd", net), X_card, y_card, None, plan, seed=0, evaluate_at_end=False)
    to_host = net.device.to_host
    np.testing.assert_allclose(to_host(results[0].network.flat), to_host(net.flat), rtol=0, atol=1e-12)
