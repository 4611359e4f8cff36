"""The training loop: gradient descent on full batches or shuffled mini-batches, with a history.

Data goes to the device once; each iteration runs only device work (a gather of the batch on
the device, the forward and backward pass, the update). Loss and accuracy come back to the host
only at logged iterations, and the clock behind `train_seconds` is stopped around that logging.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nn_gpu.model import Network


@dataclass(frozen=True)
class Schedule:
    """How long and in what batches to train.

    batch_size None means the full training set each iteration (the notebook's gradient descent);
    otherwise each iteration is one step on the next batch_size samples of a per-epoch shuffle.
    epochs, when given, sets the iterations to epochs x batches per epoch.
    """

    alpha: float = 0.10
    iterations: int = 500
    epochs: int | None = None
    batch_size: int | None = None
    log_interval: int = 10

    def batches_per_epoch(self, m: int) -> int:
        return 1 if self.batch_size is None else math.ceil(m / self.batch_size)

    def total_iterations(self, m: int) -> int:
        if self.epochs is None:
            return self.iterations
        return self.epochs * self.batches_per_epoch(m)


@dataclass
class Result:
    """What a run produced: the metrics history, the final metrics and the loop's own time."""

    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    iterations: int = 0
    train_seconds: float = 0.0
    samples: int = 0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.train_seconds if self.train_seconds > 0 else float("nan")


def _batches(m: int, schedule: Schedule, rng: np.random.Generator, xp):
    """Yield device index arrays, one per iteration (None for the full batch)."""
    if schedule.batch_size is None:
        while True:
            yield None
    while True:
        order = xp.asarray(rng.permutation(m))  # one small host-to-device copy per epoch
        for start in range(0, m, schedule.batch_size):
            yield order[start : start + schedule.batch_size]


def train(
    network: Network,
    X,
    y,
    dev: tuple | None,
    schedule: Schedule,
    rng: np.random.Generator,
    on_log: Callable[[dict], None] = lambda entry: None,
    on_step: Callable[[], None] = lambda: None,
) -> Result:
    """Train `network` on X (784 x m, on its device) and y (m labels, on its device).

    dev: (X_dev, y_dev) evaluated at each logged iteration, or None. on_log receives each
    history entry {iteration, train_loss, train_accuracy, dev_loss, dev_accuracy}; on_step is
    called after every iteration (a progress bar). Training metrics at a logged iteration are the
    means over the batches since the last log, each measured before its own update.
    """
    device = network.device
    m = X.shape[1]
    total = schedule.total_iterations(m)
    result = Result(iterations=total)
    batches = _batches(m, schedule, rng, device.xp)
    loss_sum = correct_sum = 0.0  # device scalars between logs
    seen = 0
    device.synchronize()
    started = time.perf_counter()
    for iteration in range(1, total + 1):
        rows = next(batches)
        if rows is None:
            X_batch, y_batch = X, y
        else:  # gather whole samples: rows of the m x 784 array under the 784 x m view
            X_batch, y_batch = X.T[rows].T, y[rows]
        batch_loss, batch_correct = network.step(X_batch, y_batch, schedule.alpha)
        loss_sum, correct_sum, seen = loss_sum + batch_loss, correct_sum + batch_correct, seen + y_batch.shape[0]
        result.samples += y_batch.shape[0]
        on_step()
        if (schedule.log_interval and iteration % schedule.log_interval == 0) or iteration == total:
            device.synchronize()
            result.train_seconds += time.perf_counter() - started
            entry = {
                "iteration": iteration,
                "train_loss": float(loss_sum) / seen,
                "train_accuracy": float(correct_sum) / seen,
            }
            entry.update(_dev_metrics(network, dev))
            result.history.append(entry)
            on_log(entry)
            loss_sum = correct_sum = 0.0
            seen = 0
            device.synchronize()
            started = time.perf_counter()
    train_loss, train_accuracy = network.evaluate(X, y)
    result.final = {"train_loss": train_loss, "train_accuracy": train_accuracy, **_dev_metrics(network, dev)}
    return result


def _dev_metrics(network: Network, dev) -> dict:
    if dev is None:
        return {"dev_loss": None, "dev_accuracy": None}
    loss, accuracy = network.evaluate(*dev)
    return {"dev_loss": loss, "dev_accuracy": accuracy}
