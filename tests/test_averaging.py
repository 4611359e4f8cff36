"""Weight averaging: the moving average against its formula, train's average against a hand loop's, the
average evaluated and kept as the model, and a checkpoint that resumes it exactly."""

import json

import numpy as np
from helpers import run_cli, synthetic_csv, synthetic_digits, train_in_process

import nn_gpu
from nn_gpu import averaging
from nn_gpu.checkpoint import load_checkpoint, load_model
from nn_gpu.commands.train import train_main
from nn_gpu.model import Network

IMAGES, LABELS = synthetic_digits(80, seed=6)
X = IMAGES.T


def test_the_average_follows_its_formula_with_the_warm_up():
    rng = np.random.default_rng(0)
    average, expected = np.zeros(6), np.zeros(6)
    for t in range(1, 60):
        state = rng.normal(size=6)
        averaging.update(average, state, np.array([t]), 0.9)
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * state
        np.testing.assert_allclose(average, expected, rtol=1e-12)


def test_train_keeps_the_average_of_a_hand_loop_as_the_model(cpu):
    hand = Network.create(hidden=(12,), device=cpu, seed=1, dtype="float64")
    net = Network.create(hidden=(12,), device=cpu, seed=1, dtype="float64")
    average, averages = hand.state.copy(), {}
    for t in range(1, 21):
        hand.step(hand.backward(hand.forward(X, keep=True), LABELS), alpha=0.1)
        d = min(0.95, (1 + t) / (10 + t))
        average = d * average + (1 - d) * hand.state
        averages[t] = average
    dev = (X[:, :30], LABELS[:30])
    progress = nn_gpu.train(net, X, LABELS, iterations=20, average_weights=0.95, dev=dev, log=None, log_interval=10)
    np.testing.assert_allclose(net.state, average, rtol=1e-12)  # the average is the model at the end
    assert not np.allclose(net.state, hand.state, rtol=1e-6)  # and it is not the last weights
    assert progress.history[-1]["dev_accuracy"] == net.evaluate(*dev)[1]  # the dev line is the average's
    np.testing.assert_allclose(progress.best_params, averages[progress.best_iteration], rtol=1e-12)  # the best, too


def test_a_resumed_run_averages_as_one_never_stopped(tmp_path):
    data = synthetic_csv(tmp_path / "train.csv", 300, seed=2)
    flags = ["--batch-size", "32", "--average-weights", "0.9", "--batch-norm", "--quiet"]
    assert train_in_process(data, tmp_path / "whole", "--epochs", "4", *flags) == 0
    assert train_in_process(data, tmp_path / "part", "--epochs", "2", *flags) == 0
    saved = load_checkpoint(tmp_path / "part" / "checkpoint.npz")
    assert saved.progress.average is not None and not np.array_equal(saved.progress.average, np.concatenate(
        [p.ravel() for p in saved.params]))  # fmt: skip
    assert run_cli(train_main, ["--resume", tmp_path / "part", "--epochs", "4", "--device", "cpu"])[0] == 0
    for name in ("model.npz", "best_model.npz"):
        whole, part = load_model(tmp_path / "whole" / name)[1], load_model(tmp_path / "part" / name)[1]
        for a, b in zip(whole, part):
            np.testing.assert_array_equal(a, b)
    config = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert config["average_weights"] == 0.9 and config["batch_norm"] is True
