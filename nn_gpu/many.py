"""Many networks at once: seeds, learning rates, weight decays, dropout rates and label smoothings
trained together, X read once a step for all of them (nn_gpu.stacked holds the math).

    results = nn_gpu.train_many(X, y, seeds=range(8), learning_rate=[0.1, 0.05], hidden=(128,),
                                epochs=5, batch_size=128, dev=(X_dev, y_dev), device="cpu")
    best = max(results, key=lambda r: r.best_dev_accuracy)       # best.model: its Network

Every setting of the grid is one network (grid(): the product of the lists given). All of a group
share the batches: one shuffle an epoch, drawn from shuffle_seed (default: the first seed), as a run
alone draws it from its --seed. Each network's initial weights and dropout masks come from its own
seed, so network k is the network nn_gpu.training.train trains alone with the same settings on those
batches (tests/test_many.py holds them to it). A group whose networks do not fit in the device's
memory is split into groups that do, each trained in turn, and the split is said in one line.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from nn_gpu.api import _on_device
from nn_gpu.architecture import Architecture
from nn_gpu.device import resolve_device
from nn_gpu.errors import NNGpuError
from nn_gpu.model import Network
from nn_gpu.optim import learning_rate as scheduled_rate
from nn_gpu.shapes import N_CLASSES
from nn_gpu.stacked import Setting, Stack
from nn_gpu.training import EXPLODING_LOSS, Batches, Progress, TrainingPlan, _keep_best

MEMORY_SHARE = 0.8  # of the free memory a group may plan to use: the rest is left for everything else
EVALUATION_BATCH = 8192  # Stack.evaluate's batch


@dataclass
class Result:
    """One network of a group: its setting, its network as trained (`network`) and at its best dev
    accuracy (`model`: the one to keep, the same network without a dev set), its history (one entry
    per evaluation, nn_gpu.training's), the final metrics, and whether it diverged (then `network` is
    as the evaluation that found it saw it, and `model` its best before, when a dev set scored one)."""

    setting: Setting
    network: Network
    model: Network
    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    best_iteration: int | None = None
    best_dev_accuracy: float | None = None
    diverged: bool = False
    stopped_early: bool = False


def grid(seeds: Iterable[int] = (0,), learning_rate=0.10, weight_decay=0.0, dropout=None, label_smoothing=0.0):
    """The settings of every combination, seeds varying fastest: each argument is a value or a list of
    values (dropout: rates like (0.2, 0.5), or a list of such; None for none)."""
    as_list = lambda value: list(value) if isinstance(value, list | range | np.ndarray) else [value]  # noqa: E731
    dropouts = dropout if isinstance(dropout, list) else [dropout]
    combos = itertools.product(
        as_list(learning_rate), as_list(weight_decay), dropouts, as_list(label_smoothing), as_list(seeds)
    )
    return [
        Setting(int(seed), float(lr), float(wd), None if d is None else tuple(float(p) for p in d), float(eps))
        for lr, wd, d, eps, seed in combos
    ]


def network_bytes(arch: Architecture, optimizer: str, batch: int) -> int:
    """The memory one network of a group needs: parameters, gradients, optimiser moments and two copies
    (its best and one read out), and each layer's activations, gradients and masks for a batch of the
    training step and of the evaluation."""
    itemsize = np.dtype(arch.dtype).itemsize
    moments = 1 if optimizer == "sgd" else 2
    units = sum(arch.sizes[1:])
    return itemsize * (arch.n_parameters * (4 + moments) + units * (3 * batch + 2 * EVALUATION_BATCH))


def free_memory(device) -> int:
    """Bytes free on the device: the card's free memory and CuPy's cached blocks; the machine's available memory."""
    if device.name == "gpu":
        pool = device.xp.get_default_memory_pool()
        return device.xp.cuda.runtime.memGetInfo()[0] + pool.free_bytes()
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: assume room, MemoryError will say otherwise
        return 2**62


def group_sizes(count: int, per_network: int, free: int, where: str) -> list[int]:
    """The sizes of the groups `count` networks of per_network bytes are trained in, with `free` bytes
    free on the device (`where`, for the message): one group when they fit; NNGpuError, naming the
    sizes, when not even one network fits."""
    budget = int(free * MEMORY_SHARE)
    fits = budget // per_network
    if fits < 1:
        raise NNGpuError(
            f"one network needs {per_network / 1e9:.2f} GB for training, more than the {budget / 1e9:.2f} GB "
            f"{where} can give; choose smaller layers or a smaller --batch-size"
        )
    groups = math.ceil(count / fits)
    base, extra = divmod(count, groups)
    return [base + (i < extra) for i in range(groups)]


def train_many(
    X,
    y,
    settings: list[Setting] | None = None,
    *,
    seeds: Iterable[int] = (0,),
    learning_rate=0.10,
    weight_decay=0.0,
    dropout=None,
    label_smoothing=0.0,
    hidden=(10,),
    device="auto",
    dtype: str = "float32",
    init: str = "he",
    optimizer: str = "sgd",
    momentum: float = 0.0,
    lr_schedule: str = "constant",
    iterations: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    log_interval: int | None = None,
    early_stopping: int = 0,
    dev: tuple | None = None,
    shuffle_seed: int | None = None,
    log: Callable[[str], None] | None = print,
    memory: int | None = None,
    n_classes: int = N_CLASSES,
) -> list[Result]:
    """Train one network per setting on X (n0 x m, one column per sample) and y (m labels 0..C-1), all
    at once on `device`; one Result per setting, in their order.

    settings: the networks' Settings, or None for grid(seeds, learning_rate, weight_decay, dropout,
    label_smoothing), each of which may be one value or a list. The rest is shared by every network
    and means what nn_gpu.train's keywords of the same names mean (500 full-batch iterations unless
    told otherwise). n_classes: C (default 10, the digits). memory: the bytes the group may use
    (default: what the device has free); a grid that needs more is trained in groups that fit, one
    after another, said through `log`.
    """
    settings = grid(seeds, learning_rate, weight_decay, dropout, label_smoothing) if settings is None else settings
    if not settings:
        raise ValueError("no settings to train: give at least one seed")
    plan = TrainingPlan(
        iterations=500 if iterations is None else iterations, epochs=epochs, batch_size=batch_size, log_interval=log_interval,
        lr_schedule=lr_schedule, early_stopping=early_stopping,
    )  # fmt: skip
    device = resolve_device(device) if isinstance(device, str) else device
    networks = [Network.create(hidden, device, s.seed, init, dtype, np.shape(X)[0], n_classes) for s in settings]
    X, y = _on_device(networks[0], X, y)  # nn_gpu.train's checks, on the networks' device
    dev = None if dev is None else _on_device(networks[0], *dev)
    shuffle = settings[0].seed if shuffle_seed is None else shuffle_seed
    return train_groups(networks, settings, X, y, dev, plan, optimizer, momentum, shuffle, log=log, memory=memory)


def train_groups(
    networks: list[Network],
    settings: list[Setting],
    X,
    y,
    dev,
    plan: TrainingPlan,
    optimizer: str,
    momentum: float,
    shuffle_seed: int,
    *,
    log: Callable[[str], None] | None = print,
    memory: int | None = None,
    stop: Callable[[int, dict], bool] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    exploding_loss: float = EXPLODING_LOSS,
) -> list[Result]:
    """Train `networks` (their parameters are read, never written) with their `settings`, in as many
    groups as the device's memory needs (see train_many). stop(k, entry): called with each evaluation
    of network k (global index), True to stop that network there (its result is frozen as it stands).
    should_stop(): checked after each step; True ends every group there, each network as it stands.
    A network whose loss is non-finite or over exploding_loss is stopped as diverged."""
    device, m = networks[0].device, X.shape[1]
    batch = m if plan.batch_size is None else min(plan.batch_size, m)
    per_network = network_bytes(networks[0].arch, optimizer, batch)
    where = device.describe()
    sizes = group_sizes(len(networks), per_network, free_memory(device) if memory is None else memory, where)
    if len(sizes) > 1 and log:
        log(
            f"{len(networks)} networks need {len(networks) * per_network / 1e9:.2f} GB, more than {where} has free: "
            f"training them in {len(sizes)} groups of up to {max(sizes)}"
        )
    results, start = [], 0
    for size in sizes:
        part = slice(start, start + size)
        group_stop = None if stop is None else (lambda k, entry, first=start: stop(first + k, entry))
        stack = Stack(networks[part], settings[part], optimizer, momentum, plan.lr_schedule, plan.total_iterations(m))
        results += train_stack(
            stack, X, y, dev, plan, shuffle_seed, log=log, stop=group_stop, should_stop=should_stop,
            exploding_loss=exploding_loss,
        )  # fmt: skip
        start += size
    return results


def train_stack(
    stack: Stack,
    X,
    y,
    dev,
    plan: TrainingPlan,
    shuffle_seed: int,
    *,
    log: Callable[[str], None] | None = print,
    stop: Callable[[int, dict], bool] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    exploding_loss: float = EXPLODING_LOSS,
) -> list[Result]:
    """The training loop of nn_gpu.training.train for a stack: the plan's batches from one shuffle an
    epoch (shuffle_seed), each network's evaluation at the plan's log points, its best dev accuracy kept
    (and with plan.early_stopping its run stopped), a diverged network stopped where its loss went bad."""
    xp, m = stack.device.xp, X.shape[1]
    total, every = plan.total_iterations(m), plan.evaluate_every(m)
    batches = Batches(m, plan, shuffle_seed, xp)
    if stack.device.name == "gpu":
        X, y = xp.asfortranarray(X), y.astype(np.int32, copy=False)
    progress = [Progress() for _ in range(stack.K)]
    results: list[Result | None] = [None] * stack.K
    seconds, samples, seen, logged = 0.0, 0, 0, (0, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging network is stopped, not a warning
        stack.device.synchronize()
        started = time.perf_counter()
        for t in range(1, total + 1):
            rows = batches.rows(t)
            X_batch, y_batch = (X, y) if rows is None else (X.T[rows].T, y[rows])  # ops.gather's batch
            stack.sum_gradients(X_batch, y_batch)
            stack.update(X_batch.shape[1])
            samples, seen = samples + X_batch.shape[1], seen + X_batch.shape[1]
            interrupted = should_stop()
            if not ((every and t % every == 0) or t == total or interrupted):
                continue
            sums = stack.device.to_host(stack.sums)  # host sync
            seconds += time.perf_counter() - started
            speed = (samples - logged[0]) / (seconds - logged[1]) if seconds > logged[1] else float("nan")
            logged = (samples, seconds)
            scores, finite = (None, None) if dev is None else stack.evaluate(*dev), stack.finite()
            for k in (k for k in range(stack.K) if results[k] is None):
                entry = _entry(plan, stack.settings[k], t, total, m, sums[k] / seen, k, scores, speed)
                loss = entry["train_loss"]
                diverged = not (finite[k] and math.isfinite(loss)) or loss > exploding_loss
                progress[k].iteration = t
                progress[k].history.append(entry)
                if dev is not None and not diverged:
                    _keep_best(stack.state(k), progress[k], entry["dev_accuracy"], plan.early_stopping)
                if diverged or progress[k].stopped_early or (stop is not None and stop(k, entry)):
                    results[k] = _result(stack, k, progress[k], entry, diverged)
            if log:
                log(_summary_line(t, results, progress, dev is not None))
            stack.reset_sums()
            seen = 0
            if all(r is not None for r in results) or interrupted:
                break
            stack.device.synchronize()
            started = time.perf_counter()
    return [r or _result(stack, k, progress[k], progress[k].history[-1], False) for k, r in enumerate(results)]


def _entry(plan: TrainingPlan, setting: Setting, t: int, total: int, m: int, means, k: int, scores, speed) -> dict:
    """Network k's history entry at iteration t, as nn_gpu.training's: means = (train loss, train accuracy)
    since the last, scores = (dev losses, dev accuracies) of every network (None, None without a dev set)."""
    return {
        "iteration": t,
        **({} if plan.epochs is None else {"epoch": t / plan.batches_per_epoch(m)}),
        "learning_rate": scheduled_rate(plan.lr_schedule, setting.learning_rate, t, total),
        "train_loss": float(means[0]),
        "train_accuracy": float(means[1]),
        "dev_loss": None if scores[0] is None else float(scores[0][k]),
        "dev_accuracy": None if scores[1] is None else float(scores[1][k]),
        "samples_per_second": speed,
    }


def _result(stack: Stack, k: int, progress: Progress, entry: dict, diverged: bool) -> Result:
    """Network k's Result as it stands now (a diverged network: as it stood at its best, or at its start)."""
    network = stack.network(k)
    best = network if progress.best_params is None else stack.network(k, progress.best_params)
    final = {key: entry[key] for key in ("train_loss", "train_accuracy", "dev_loss", "dev_accuracy")}
    return Result(
        stack.settings[k], network, best, progress.history, final, progress.best_iteration,
        progress.best_dev_accuracy, diverged, progress.stopped_early,
    )  # fmt: skip


def _summary_line(t: int, results, progress, with_dev: bool) -> str:
    """One line for an evaluation of the whole group: the best network's dev (or train) accuracy, the mean
    and the worst, over the networks evaluated at iteration t."""
    key = "dev_accuracy" if with_dev else "train_accuracy"
    scores = np.array(
        [p.history[-1][key] if p.history and p.history[-1]["iteration"] == t else np.nan for p in progress]
    )
    finished = sum(r is not None for r in results)
    done = f"; {finished} of {len(results)} stopped" if finished else ""
    if np.isnan(scores).all():
        return f"iteration {t}{done}"
    return (
        f"iteration {t}: {key.replace('_', ' ')} best {np.nanmax(scores):.2%} (network {int(np.nanargmax(scores))}), "
        f"mean {np.nanmean(scores):.2%}, worst {np.nanmin(scores):.2%}{done}"
    )
