"""The training loop's wiring against an independent hand loop: the shuffle, the slices, the learning-rate
formula and the update equations, written out here from their documentation, bit for bit; and early
stopping's count over scripted dev accuracies."""

import dataclasses
import math

import numpy as np
import pytest
from helpers import synthetic_digits

from nn_gpu import training
from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.model import Network
from nn_gpu.optim import SGD
from nn_gpu.training import TrainingPlan, train

M, BATCH, ITERATIONS = 50, 16, 10  # batches of 16, 16, 16 and 2: 2.5 epochs
ALPHA, MOMENTUM, WEIGHT_DECAY, SEED = 0.1, 0.9, 1e-3, 7
ARCH = Architecture((10,), "float64")


@pytest.fixture(scope="module")
def data():
    images, labels = synthetic_digits(M, seed=3)
    assert len({image.tobytes() for image in images}) == M  # each sample recognisable by its pixels
    return images, labels.astype(np.int64)


def new_network(cpu):
    return Network(ARCH, cpu, init_parameters(ARCH, "he", np.random.default_rng(0)))


def hand_loop(cpu, images, labels):
    """Mini-batch SGD as the docs say it: epoch e's order is default_rng([seed, e]).permutation(m); step t
    of epoch e takes order[t b:(t + 1) b]; lr = alpha (1 + cos(pi (t - 1) / T)) / 2 (cosine); then
    d = g + weight_decay p, v := momentum v + d, p := p - lr v. The network supplies gradients only.
    Returns (the final flat parameters, the rows of each step, the learning rate and mean loss of each step).
    """
    network = new_network(cpu)
    p, v = network.flat, np.zeros_like(network.flat)
    per_epoch = math.ceil(M / BATCH)
    steps, rates, losses = [], [], []
    for t in range(1, ITERATIONS + 1):
        epoch, position = divmod(t - 1, per_epoch)
        order = np.random.default_rng([SEED, epoch]).permutation(M)
        rows = order[position * BATCH : (position + 1) * BATCH]
        progress = (t - 1) / ITERATIONS
        lr = ALPHA * (1 + math.cos(math.pi * progress)) / 2
        loss_sum, _ = network.gradients(images[rows].T, labels[rows])
        g = network.flat_grad
        d = g + WEIGHT_DECAY * p
        v = MOMENTUM * v + d
        p[...] = p - lr * v
        steps.append(rows)
        rates.append(lr)
        losses.append(float(loss_sum) / len(rows))
    return p.copy(), steps, rates, losses


def test_train_is_the_hand_loop_bit_for_bit(cpu, data):
    images, labels = data
    network = new_network(cpu)
    row_of = {image.tobytes(): i for i, image in enumerate(images)}
    seen = []  # the rows of each step, as train() handed them to the network
    sum_gradients = network.sum_gradients

    def recording(X, y, sums, dropout, label_smoothing):
        assert dropout is None and label_smoothing == 0  # no dropout, no smoothing asked for
        seen.append(np.array([row_of[column.tobytes()] for column in np.asarray(X.T)]))
        return sum_gradients(X, y, sums, dropout, label_smoothing)

    network.sum_gradients = recording
    plan = TrainingPlan(
        learning_rate=ALPHA, iterations=ITERATIONS, batch_size=BATCH, log_interval=1, lr_schedule="cosine"
    )
    optimizer = SGD(network, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    progress = train(network, optimizer, images.T, labels, None, plan, seed=SEED)

    expected, steps, rates, losses = hand_loop(cpu, images, labels)
    assert [len(rows) for rows in seen] == [16, 16, 16, 2] * 2 + [16, 16]
    for t, (rows, want) in enumerate(zip(seen, steps, strict=True), start=1):
        np.testing.assert_array_equal(rows, want, err_msg=f"step {t}")
    epochs = [np.concatenate(seen[0:4]), np.concatenate(seen[4:8])]
    for order in epochs:  # each epoch covers every sample exactly once ...
        np.testing.assert_array_equal(np.sort(order), np.arange(M))
    assert not np.array_equal(epochs[0], epochs[1])  # ... in an order of its own
    assert [entry["learning_rate"] for entry in progress.history] == rates
    assert rates[0] == ALPHA and rates[-1] < ALPHA / 10  # cosine, from alpha down towards 0
    assert [entry["train_loss"] for entry in progress.history] == losses
    np.testing.assert_array_equal(network.flat, expected)


# Dev accuracies, one per evaluation: a setback (0.4), a better one (0.6), a tie with it, then setbacks.
SCRIPTED_DEV = [0.5, 0.4, 0.6, 0.6, 0.5, 0.5, 0.9, 0.9, 0.9]


def test_early_stopping_counts_the_evaluations_since_the_first_best_and_keeps_a_copy_of_it(cpu, data, monkeypatch):
    """Patience 3: the setback before the best does not count once 0.6 beats it, the tie is no
    improvement, and the third evaluation after the best stops the run. The best kept is the network
    after iteration 3, as a run of 3 iterations alone ends, while the network trained on."""
    images, labels = data
    plan = TrainingPlan(learning_rate=ALPHA, iterations=20, batch_size=BATCH, log_interval=1, early_stopping=3)
    alone = new_network(cpu)
    train(alone, SGD(alone), images.T, labels, None, dataclasses.replace(plan, iterations=3), seed=SEED)
    accuracies = iter(SCRIPTED_DEV)
    monkeypatch.setattr(training, "_dev_metrics", lambda net, dev: {"dev_loss": 1.0, "dev_accuracy": next(accuracies)})
    network = new_network(cpu)
    progress = train(network, SGD(network), images.T, labels, (images.T, labels), plan, seed=SEED)
    assert [entry["dev_accuracy"] for entry in progress.history] == SCRIPTED_DEV[:6]
    assert progress.stopped_early and progress.iteration == 6 and progress.waited == 3
    assert (progress.best_iteration, progress.best_dev_accuracy) == (3, 0.6)
    np.testing.assert_array_equal(progress.best_params, alone.state)
    assert not np.array_equal(progress.best_params, network.state)  # trained on after its best
