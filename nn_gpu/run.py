"""A training run as one object: its settings, its folder, its data and its state, started afresh or
resumed from the folder's checkpoint, and trained there (train.py's work, without its flags and its
printing: nn_gpu.commands.train reads the flags, nn_gpu.report says what happened).

    run = Run.start(config, device, folder)        # or Run.resume(folder, device, length, prog)
    with StopSignals() as stop:
        result = run.train(hooks, stop, graphs=True)

A resumed run keeps the checkpoint's settings (only its length may grow) and its data's scaling, and
refuses data whose training rows have changed, so that it ends bit for bit where a run never stopped
would have. Ctrl-C, SIGTERM and SIGHUP save a checkpoint and stop at the next step (StopSignals).
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.checkpoint import TrainingData, load_checkpoint, save_checkpoint
from nn_gpu.config import RunConfig
from nn_gpu.data import SAMPLE, Dataset, load_dataset, rows_to_device, split_dev
from nn_gpu.device import Device
from nn_gpu.download import REMOTES
from nn_gpu.errors import DataError, NNGpuError
from nn_gpu.model import Network
from nn_gpu.optim import make_optimizer
from nn_gpu.outputs import BEST_MODEL, CHECKPOINT, RunFolder
from nn_gpu.table import DIGITS, Encoding, Scaling
from nn_gpu.training import Hooks, Interrupted, Progress, train


class RunData(NamedTuple):
    dataset: Dataset
    train: Dataset  # a table's features scaled by encoding.scaling, as dev's
    dev: Dataset
    rng: np.random.Generator  # the seed's generator after the split: it draws the initial weights next
    encoding: Encoding  # the classes (and a table's columns and scaling) the model will store


def data_path(data: str) -> str:
    """--data as a run stores it: a path made absolute, so that a resumed run finds it from any working
    directory (not resolve(): load_dataset names a symlink loop); 'sample' and the remote names as they are."""
    return data if data in (SAMPLE, *REMOTES) else os.path.abspath(data)


def labels_on(dataset: Dataset, device: Device | None):
    """The dataset's labels as int32 on `device` (None: only checked), or DataError when it has none."""
    if dataset.labels is None:
        raise DataError(
            f"{dataset.source}: has no labels (no label column, or no IDX labels file beside the images); "
            "training needs labels (a Kaggle test.csv is for predict.py)"
        )
    return None if device is None else device.to_device(dataset.labels.astype(np.int32))


def load_run_data(config: RunConfig, scaling: Scaling | None = None) -> RunData:
    """The run's data, split: DataError, before anything else is said of the data, when it has no labels
    or too few samples for the dev set. A table's features are scaled by `scaling` (a resumed run's),
    else by a scaling fitted on the training rows."""
    dataset = load_dataset(config.data, config.label_column)
    labels_on(dataset, None)
    table = dataset.encoding is not None
    if config.scale and not table:
        raise NNGpuError(f"--scale {config.scale}: scales a CSV table's features; digit images are divided by 255")
    if config.augment and table:
        raise NNGpuError(f"--augment distorts 28 x 28 digit images; {dataset.source} holds a table of features")
    rng = np.random.default_rng(config.seed)
    train_set, dev_set = split_dev(dataset, config.dev_size, rng)
    if not table:
        return RunData(dataset, train_set, dev_set, rng, Encoding(DIGITS))
    if scaling is None:
        try:
            scaling = Scaling.fit(config.scale or "standard", train_set.rows, dataset.encoding.features)
        except DataError as error:
            raise DataError(f"{dataset.source}: {error}") from None
    encoding = dataclasses.replace(dataset.encoding, scaling=scaling)
    train_set, dev_set = (dataclasses.replace(d, rows=scaling.apply(d.rows)) for d in (train_set, dev_set))
    return RunData(dataset, train_set, dev_set, rng, encoding)


def parameter_bytes(arch: Architecture) -> int:
    return arch.n_parameters * np.dtype(arch.dtype).itemsize


def check_size(arch: Architecture, device: Device) -> None:
    """Refuse, before allocating, a network whose parameters, gradients and optimiser moments cannot fit in memory."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: MemoryError will say it
        return
    needed = 5 * parameter_bytes(arch)  # parameters, gradients, up to two moments (Adam's), and a host copy
    if device.name == "cpu" and needed > memory:
        hidden = ",".join(map(str, arch.hidden))
        raise NNGpuError(
            f"--hidden {hidden}: the parameters, gradients and optimiser moments need {needed / 1e9:.1f} GB, "
            f"more than this machine's {memory / 1e9:.1f} GB of memory; choose smaller layers"
        )


def extended(config: RunConfig, length: dict, progress: Progress, resume: str) -> RunConfig:
    """The saved config with the run's length changed to `length` ({"epochs": N} or {"iterations": N};
    {} keeps it): NNGpuError when the run cannot be extended to N bit-identically. resume: the flag
    as typed, for the messages."""
    if not length:
        return config
    ((unit, n),) = length.items()
    trained_by, planned = config.length
    if unit != trained_by:
        raise NNGpuError(f"{resume}: the run counts {trained_by} ({planned}); extend it with --{trained_by} N")
    if n < planned:
        raise NNGpuError(f"{resume} --{unit} {n}: the run is {planned} {unit} long already; give more to extend it")
    if config.lr_schedule != "constant" and n != planned:
        raise NNGpuError(
            f"{resume} --{unit} {n}: the {config.lr_schedule} learning-rate schedule is laid out over the run's "
            f"length, so a longer run would have taken other steps from the start; train a new run of {n} {unit}"
        )
    if progress.stopped_early:
        raise NNGpuError(
            f"{resume}: the run stopped early at iteration {progress.iteration} (no better dev accuracy in "
            f"{config.early_stopping} evaluations): a longer run stops there too; its best model is {BEST_MODEL}"
        )
    return config.replace(**{unit: n})


def check_same_data(data: RunData, arch: Architecture, encoding: Encoding, trained_on, path: Path) -> None:
    """NNGpuError unless the data of a resumed run still has the saved network's inputs and classes and,
    where the checkpoint knows them (trained_on: TrainingData or None), the same training rows in the same order."""
    n_inputs, classes = data.train.rows.shape[1], data.encoding.classes
    if n_inputs != arch.n_inputs or not np.array_equal(classes, encoding.classes):
        raise NNGpuError(
            f"{path}: the run was trained on {arch.n_inputs} inputs and {arch.n_classes} classes; "
            f"{data.dataset.source} now holds {n_inputs} inputs and {len(classes)} classes"
        )
    if trained_on is not None and not np.array_equal(data.train.hashes, trained_on.hashes):
        raise NNGpuError(
            f"{path}: {data.dataset.source} has changed since the run began: its training rows are not the "
            f"run's ({len(data.train):,} now, {len(trained_on.hashes):,} then, after the dev split); resume with "
            "the data the run started from, or train a new run"
        )


class StopSignals:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP recorded instead of acted on, while the `with` block lasts.

    Schedulers stop jobs with SIGTERM (SLURM preemption, docker stop, systemd, timeout) and a closed
    terminal sends SIGHUP: each is treated like Ctrl-C. `received()` is the first signal's number
    (0 while none came); `check(when)` raises Interrupted, exit code 128 + that number.
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __enter__(self) -> StopSignals:
        self._signals: list[int] = []
        self._previous = {}
        for name in self.NAMES:
            if hasattr(signal, name):  # no SIGHUP on Windows
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, lambda signum, frame: self._signals.append(signum))
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def received(self) -> int:
        return self._signals[0] if self._signals else 0

    def check(self, when: str) -> None:
        if self._signals:
            raise Interrupted(when, self._signals[0])


@dataclasses.dataclass
class Run:
    """One run in its claimed folder: settings, architecture, data, and the state it goes on from
    (params, optimiser moments and progress: None for a new run)."""

    folder: RunFolder
    config: RunConfig
    arch: Architecture
    data: RunData
    params: list | None = None
    moments: list | None = None
    progress: Progress | None = None

    @classmethod
    def start(cls, config: RunConfig, data: RunData, folder: RunFolder) -> Run:
        """A new run of `config` on `data` (load_run_data's, read before the folder was claimed)."""
        return cls(folder, config, architecture(config, data), data)

    @classmethod
    def resume(cls, folder: RunFolder, length: dict, resume: str) -> Run:
        """The run saved in folder's checkpoint, its length changed to `length` (see `extended`)."""
        path = folder.path / CHECKPOINT
        arch, params, moments, progress, config, encoding, trained_on = load_checkpoint(path)
        config = extended(config, length, progress, resume)
        data = load_run_data(config, encoding.scaling)  # the checkpoint's scaling, never one refitted
        check_same_data(data, arch, encoding, trained_on, path)
        return cls(folder, config, arch, data, params, moments, progress)

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def trained_on(self) -> TrainingData:
        return TrainingData(self.data.dataset.source, self.data.train.hashes)

    def network(self, device: Device, threads: int) -> tuple[Network, object]:
        """The network (the saved parameters, or ones drawn from the seed) and its optimiser, on `device`."""
        config, params = self.config, self.params
        if params is None:
            params = init_parameters(self.arch, config.init, self.data.rng)
        network = Network(self.arch, device, params)
        network.runner.threads = threads
        iteration = 0 if self.progress is None else self.progress.iteration
        optimizer = make_optimizer(
            config.optimizer, network, config.momentum, config.weight_decay, self.moments, iteration
        )
        if self.progress is not None:
            for name in ("best_params", "average"):
                if getattr(self.progress, name) is not None:
                    setattr(self.progress, name, device.to_device(getattr(self.progress, name)))
        return network, optimizer

    def initial_parameters(self, seed: int) -> list:
        """The initial weights a new run of this config with --seed `seed` draws (host arrays): from the
        seed's generator after the dev split it draws first (a permutation of the dataset's samples)."""
        rng = np.random.default_rng(seed)
        rng.permutation(len(self.data.dataset))  # split_dev's draw
        return init_parameters(self.arch, self.config.init, rng)

    def on_device(self, dataset: Dataset, device: Device) -> tuple | None:
        """(X, y) of `dataset` on `device`, or None when it is empty."""
        if not len(dataset):
            return None
        return rows_to_device(dataset.rows, device, self.arch.dtype), labels_on(dataset, device)

    def saver(self, network: Network, optimizer, prog: str):
        """save(progress): the checkpoint, written atomically; a failed write says which checkpoint is
        still whole on disk."""
        saved_at = None if self.progress is None else self.progress.iteration  # the one on disk: a resumed run's
        device, path = network.device, self.path / CHECKPOINT

        def save(progress: Progress) -> Path:
            nonlocal saved_at
            params = [device.to_host(p) for p in network.arrays]
            best = device.to_host(network.state if progress.best_params is None else progress.best_params)
            moments = [device.to_host(moment) for moment in optimizer.state]
            try:
                save_checkpoint(
                    path, self.arch, params, moments, best, progress, self.config, self.data.encoding, self.trained_on,
                    None if progress.average is None else device.to_host(progress.average),
                )  # fmt: skip
            except OSError as error:  # written beside it and renamed over it: the one on disk is whole
                kept = (
                    f"the checkpoint of iteration {saved_at} is intact; free some space and resume with "
                    f"{prog} --resume {self.path}"
                    if saved_at is not None
                    else "no checkpoint was saved before it; free some space and train again"
                )
                raise NNGpuError(
                    f"{path}: cannot save the checkpoint of iteration {progress.iteration} "
                    f"({(error.strerror or str(error)).lower()}); {kept}"
                ) from None
            saved_at = progress.iteration
            return path

        return save

    def train(self, network: Network, optimizer, hooks: Hooks, graphs: bool = True) -> Progress:
        """Train on the run's data from its state; the test set, when labelled, is evaluated at the end."""
        device, (dataset, train_set, dev_set, _, _) = network.device, self.data
        X, y = self.on_device(train_set, device)
        progress = train(
            network, optimizer, X, y, self.on_device(dev_set, device), self.config.plan(),
            seed=self.config.seed, progress=self.progress, hooks=hooks, graphs=graphs,
        )  # fmt: skip
        test = dataset.test
        if test is not None and test.labels is not None:
            test_loss, test_accuracy = network.evaluate(*self.on_device(test, device))
            progress.final.update(test_loss=test_loss, test_accuracy=test_accuracy)
        return progress


def architecture(config: RunConfig, data: RunData) -> Architecture:
    return Architecture(
        config.hidden, config.dtype, data.train.rows.shape[1], len(data.encoding.classes), config.batch_norm
    )
