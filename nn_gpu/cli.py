"""The command line of scripts/train.py and `nn-gpu train` (`train_main`), and what it shares with the
other commands.

Every error a user can cause ends as one line on stderr and exit code 2 (see nn_gpu.errors); a
diverged run ends with exit code 3. Ctrl-C, SIGTERM and SIGHUP stop training at the next step, save
a checkpoint and say so (not as an error), and exit with 128 + the signal's number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nn_gpu import __version__, parallel, plots
from nn_gpu.augment import AUGMENTATIONS
from nn_gpu.checkpoint import TrainingData, load_checkpoint, save_checkpoint, save_model
from nn_gpu.data import SAMPLE, Dataset, load_dataset, pixels_to_device, split_dev
from nn_gpu.device import (
    DEVICE_CHOICES,
    INSTALL_HINT,
    Device,
    gpu_unavailable_reason,
    out_of_memory_error,
    parse_device,
    resolve_device,
)
from nn_gpu.download import REMOTES
from nn_gpu.dropout import layer_rates
from nn_gpu.errors import DataError, DeviceError, ModelFileError, NNGpuError, one_line
from nn_gpu.model import DTYPES, INITS, Architecture, Network, init_parameters
from nn_gpu.optim import OPTIMIZERS, SCHEDULES, make_optimizer
from nn_gpu.outputs import check_room, claim, new_run_folder
from nn_gpu.run_log import TENSORBOARD_DIR, TENSORBOARD_HINT, MetricsLog, tensorboard_writer_class
from nn_gpu.safe_io import write_text_atomically
from nn_gpu.table import DIGITS, SCALES, Encoding, Scaling
from nn_gpu.training import EPOCH_BATCH_SIZE, LOG_LEGEND, Interrupted, TrainingPlan, log_line, percent, train

DRY_RUN_ITERATIONS = 3
DEFAULT_ITERATIONS = 500
CHECKPOINT = "checkpoint.npz"
BEST_MODEL = "best_model.npz"


class Parser(argparse.ArgumentParser):
    """argparse, with a flag error as one line that points to --help instead of the whole usage."""

    def error(self, message: str):
        self.exit(2, f"error: {one_line(message)} (see {self.prog} --help)\n")


def _number(text: str, kind=float):
    """text as a `kind` (int or float), or the argparse error a user reads (not argparse's 'invalid value')."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole' if kind is int else 'a'} number, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _learning_rate(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _momentum(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _weight_decay(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def _label_smoothing(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def dropout_rates(text: str) -> tuple[float, ...]:
    """`--dropout`: rates like 0.2,0.5 (input, then hidden layers), each in [0, 1)."""
    try:
        rates = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected rates like 0.2,0.5 (input, hidden), got {text!r}") from None
    if len(rates) < 2:
        raise argparse.ArgumentTypeError(
            f"give the input's rate and the hidden layers', e.g. 0,{text} for hidden units only; got {text!r}"
        )
    if not all(0 <= p < 1 for p in rates):
        raise argparse.ArgumentTypeError(f"every rate must be at least 0 and below 1, got {text!r}")
    return rates


def device_name(text: str) -> str:
    """`--device`: auto, cpu, gpu or gpu:N, checked here; nn_gpu.device resolves it."""
    try:
        parse_device(text)
    except DeviceError:
        raise argparse.ArgumentTypeError(f"expected {DEVICE_CHOICES}, got {text!r}") from None
    return text


def widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 10 or 256,128, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"every width must be at least 1, got {text!r}")
    return widths


def add_version(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action="version", version=f"nn_gpu {__version__}")


def train_parser(prog: str = "train.py") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description="Train the notebook's digit network (784 -> hidden ReLU -> 10 softmax) with hand-written "
        "backpropagation, or one for any CSV table of features and labels. With no flags: the notebook's job, "
        "500 full-batch steps on the built-in sample.",
    )
    add_version(p)
    p.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help=f"auto: card 0 if usable, else the CPU (default); cpu; gpu (card 0) or gpu:N. The GPU needs CuPy: {INSTALL_HINT}",
    )
    p.add_argument(
        "--data",
        default=SAMPLE,
        help="a CSV (Kaggle's or label-first), an IDX file or folder, 'mnist', 'fashion-mnist', "
        "or 'sample' (default: 5,000 built-in MNIST digits); or a CSV table with a header line, its labels in "
        "--label-column and numeric features in every other column",
    )
    p.add_argument(
        "--label-column",
        default="label",
        metavar="NAME",
        help="a CSV table's label column (default label); its labels may be any whole numbers or text",
    )
    p.add_argument(
        "--scale",
        choices=SCALES,
        help="how a CSV table's features are scaled, fitted on the training rows and stored in the model: "
        "standard (default: mean 0, standard deviation 1), minmax (to [0, 1]) or none. Digit images are "
        "always divided by 255",
    )
    p.add_argument(
        "--dev-size",
        type=non_negative_int,
        default=1000,
        help="images held out for the dev set after a seeded shuffle (default 1000)",
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="same seed, same device: same result (default 0)")
    p.add_argument("--hidden", type=widths, default=(10,), help="hidden layer widths, e.g. 10 or 256,128 (default 10)")
    p.add_argument("--alpha", "--lr", type=_learning_rate, default=0.10, help="learning rate (default 0.10)")
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--iterations",
        type=positive_int,
        help=f"gradient steps (default {DEFAULT_ITERATIONS}, when --epochs is not given)",
    )
    length.add_argument(
        "--epochs",
        type=positive_int,
        help=f"passes over the training set in shuffled mini-batches (of {EPOCH_BATCH_SIZE} unless --batch-size "
        "says otherwise), instead of --iterations; evaluated once an epoch",
    )
    p.add_argument("--init", choices=INITS, default="he", help="he (default) or uniform, the notebook's U(-0.5, 0.5)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        help=f"mini-batch size (default: the full training set; {EPOCH_BATCH_SIZE} with --epochs)",
    )
    p.add_argument(
        "--momentum", type=_momentum, default=0.0, help="SGD momentum in [0, 1), v := momentum v + g (default 0)"
    )
    p.add_argument(
        "--weight-decay", type=_weight_decay, default=0.0, help="L2 weight decay added to each gradient (default 0)"
    )
    p.add_argument("--lr-schedule", choices=SCHEDULES, default="constant", help="constant (default), step or cosine")
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="sgd",
        help="sgd (default, with --momentum), adam or adamw (betas 0.9, 0.999, eps 1e-8; --weight-decay is L2 for "
        "adam, decoupled for adamw; an --alpha near 0.001 suits both)",
    )
    p.add_argument(
        "--dropout",
        type=dropout_rates,
        metavar="RATES",
        help="inverted dropout in training steps: INPUT,HIDDEN rates, e.g. 0.2,0.5 drops 20%% of the pixels and half "
        "of each hidden layer's units; one rate per hidden layer may follow the input's (the last repeats)",
    )
    p.add_argument(
        "--label-smoothing",
        type=_label_smoothing,
        default=0.0,
        metavar="EPS",
        help="train towards (1 - EPS) on the label and EPS / C on every one of the C classes (default 0: one-hot)",
    )
    p.add_argument(
        "--augment",
        choices=tuple(AUGMENTATIONS),
        help="distort each training batch afresh: affine (rotation, scale, shift), elastic (Simard 2003) or both",
    )
    p.add_argument(
        "--save-every",
        type=non_negative_int,
        default=0,
        help="save DIR/checkpoint.npz every N iterations too (default 0: only at the end and on a stop signal)",
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue the run saved in DIR/checkpoint.npz; with --epochs N or --iterations N, extend it to N",
    )
    p.add_argument(
        "--log-interval",
        type=non_negative_int,
        help="evaluate every N iterations, 0 for only at the end (default 10; with --epochs, once an epoch)",
    )
    p.add_argument(
        "--early-stopping",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="stop after N evaluations in a row without a better dev accuracy (default 0: off); "
        "best_model.npz holds the best either way",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help=f"also write TensorBoard event files to DIR/{TENSORBOARD_DIR} (needs tensorboardX: {TENSORBOARD_HINT})",
    )
    p.add_argument(
        "--weights-layer",
        type=positive_int,
        default=1,
        metavar="L",
        help="the layer weights.png draws (default 1; a deeper layer is drawn as the product of the weights "
        "below it, ReLU left out)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help=f"train {DRY_RUN_ITERATIONS} iterations only, as a smoke test"
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        help="CPU threads for batches of over 1,024 samples (default: the cores this process may use, "
        f"here {parallel.cores()}); BLAS runs on one thread per worker",
    )
    p.add_argument(
        "--no-graph",
        action="store_true",
        help="on the GPU, launch every kernel of every step from Python instead of replaying each step as a CUDA "
        "graph (the same numbers, slower): for debugging",
    )
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument(
        "--output-dir",
        type=Path,
        help="where best_model.npz, model.npz and the metrics go (default runs/<timestamp>)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --output-dir (its model, metrics, pictures)",
    )
    return p


MESSAGE_LIMIT = 600  # characters: a message quoting a huge cell or a long path stays readable


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run `main`, turning nn_gpu errors, unwritable outputs, exhausted memory, GPU out-of-memory and
    Ctrl-C into one line and an exit code."""

    def say(message) -> None:
        text = one_line(message)
        if len(text) > MESSAGE_LIMIT:
            text = f"{text[: MESSAGE_LIMIT - 40]} ... ({len(text):,} characters in all)"
        print(f"error: {text}", file=sys.stderr)

    try:
        return main(argv)
    except Interrupted as stopped:  # not an error: the user asked, and the work is saved
        print(one_line(stopped), file=sys.stderr)
        return stopped.exit_code
    except NNGpuError as error:
        say(error)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # an output that cannot be written: a missing folder, no permission, a full disk
        say(f"{error.filename}: {error.strerror or error}" if error.filename else error.strerror or error)
        return 2
    except Exception as error:  # CuPy's OutOfMemoryError (a MemoryError too in CuPy 14) gets the GPU's advice
        oom = out_of_memory_error(error)
        if oom is not None:
            say(oom)
            return oom.exit_code
        if isinstance(error, MemoryError):
            say(f"not enough memory ({error or 'the allocation failed'})")
            return 2
        raise


def _say(quiet: bool, text: str, write=print) -> None:
    if not quiet:
        write(text)


def _labels(dataset, device: Device | None):
    """The dataset's labels as int32 on `device` (None: only checked), or DataError when it has none."""
    if dataset.labels is None:
        raise DataError(
            f"{dataset.source}: has no labels (no label column, or no IDX labels file beside the images); "
            "training needs labels (a Kaggle test.csv is for predict.py)"
        )
    return None if device is None else device.to_device(dataset.labels.astype(np.int32))


# The flags that define a run; a checkpoint stores them, and --resume takes them from it.
RUN_SETTINGS = (
    "data", "dev_size", "seed", "hidden", "alpha", "iterations", "epochs", "init", "dtype", "batch_size",
    "log_interval", "momentum", "weight_decay", "lr_schedule", "save_every", "early_stopping",
    "optimizer", "dropout", "augment", "label_smoothing", "label_column", "scale",
)  # fmt: skip
ADDED_SETTINGS = {
    "optimizer": "sgd",
    "dropout": None,
    "augment": None,
    "label_smoothing": 0.0,
    "label_column": "label",
    "scale": None,
}  # absent from older checkpoints
LENGTH = ("epochs", "iterations")  # the settings --resume may change: it extends the run


def _run_settings(args) -> dict:
    settings = {name: getattr(args, name) for name in RUN_SETTINGS}
    settings["hidden"] = list(args.hidden)
    settings["dropout"] = None if args.dropout is None else list(args.dropout)
    if settings["data"] not in (SAMPLE, *REMOTES):  # a path: keep it valid from any working directory
        settings["data"] = os.path.abspath(settings["data"])  # not resolve(): load_dataset names a symlink loop
    if args.dry_run:
        settings.update(iterations=DRY_RUN_ITERATIONS, epochs=None)
    if settings["epochs"] is None and settings["iterations"] is None:
        settings["iterations"] = DEFAULT_ITERATIONS
    settings["batch_size"] = TrainingPlan(epochs=settings["epochs"], batch_size=settings["batch_size"]).batch_size
    return settings


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


def _saved_settings(config: dict, path: Path, arch: Architecture) -> dict:
    """The run settings of a checkpoint, checked as the flags that made them were: ModelFileError if any
    is missing, of the wrong type or out of range, or disagrees with the saved network."""
    config = {**ADDED_SETTINGS, **config}
    missing = [name for name in RUN_SETTINGS if name not in config]
    if missing:
        raise ModelFileError(f"{path}: damaged training state (settings missing: {', '.join(missing)})")
    argv = []
    for name in RUN_SETTINGS:
        value = config[name]
        if value is None or (name == "iterations" and config["epochs"] is not None):
            continue
        if name in ("hidden", "dropout") and isinstance(value, list):
            value = ",".join(map(str, value))
        argv += [f"--{name.replace('_', '-')}", str(value)]

    def refuse(message: str):
        raise ModelFileError(f"{path}: damaged training state (saved {one_line(message)})")

    parser = train_parser()
    parser.error = refuse
    settings = _run_settings(parser.parse_args(argv))
    if (tuple(settings["hidden"]), settings["dtype"]) != (arch.hidden, arch.dtype):
        refuse(f"hidden {settings['hidden']} {settings['dtype']} differ from the saved network's")
    return settings


def _parameter_bytes(arch: Architecture) -> int:
    return arch.n_parameters * np.dtype(arch.dtype).itemsize


def _check_size(arch: Architecture, device: Device) -> None:
    """Refuse, before allocating, a network whose parameters, gradients and optimiser moments cannot fit in memory."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: MemoryError will say it
        return
    needed = 5 * _parameter_bytes(arch)  # parameters, gradients, up to two moments (Adam's), and a host copy
    if device.name == "cpu" and needed > memory:
        hidden = ",".join(map(str, arch.hidden))
        raise NNGpuError(
            f"--hidden {hidden}: the parameters, gradients and optimiser moments need {needed / 1e9:.1f} GB, "
            f"more than this machine's {memory / 1e9:.1f} GB of memory; choose smaller layers"
        )


def train_command(argv: list[str] | None = None, prog: str = "train.py") -> int:
    args = train_parser(prog).parse_args(argv)
    args.prog = prog
    if args.resume and args.overwrite:
        raise NNGpuError("--overwrite replaces a run and --resume continues one: choose one")
    if args.tensorboard:
        tensorboard_writer_class()  # refused now, not after training, when tensorboardX is missing
    device = resolve_device(args.device)
    fallback = gpu_unavailable_reason() if args.device == "auto" and device.name == "cpu" else None
    args.threads = args.threads or parallel.cores()
    print(
        f"device: {device.describe()}"
        + (f"; no GPU: {fallback.split(': ')[0]}" if fallback else "")
        + _threads_note(device, args.threads)
    )
    params = moments = progress = None
    if args.resume:
        length = _refuse_new_settings(args)
        if not args.resume.is_dir():
            raise NNGpuError(f"--resume {args.resume}: no such folder")
        folder = claim(args.resume, resume=True)
    else:
        settings = _run_settings(args)
        _check_weights_layer(args.weights_layer, Architecture(tuple(settings["hidden"]), settings["dtype"]))
        data = _training_data(settings)  # a bad file is refused before any folder is made
        arch = Architecture(
            tuple(settings["hidden"]), settings["dtype"], data.train.images.shape[1], len(data.encoding.classes)
        )
        _check_size(arch, device)
        folder = (
            claim(args.output_dir, overwrite=args.overwrite)
            if args.output_dir
            else claim(new_run_folder(), created=True)
        )
    with folder:
        if args.resume:
            arch, params, moments, progress, config, encoding, trained_on = load_checkpoint(folder.path / CHECKPOINT)
            settings = _extended(_saved_settings(config, folder.path / CHECKPOINT, arch), length, progress, args)
            _check_weights_layer(args.weights_layer, arch)
            _say(args.quiet, f"resuming {folder.path / CHECKPOINT} after iteration {progress.iteration}")
            data = _training_data(settings, encoding.scaling)  # the checkpoint's scaling, never one refitted
            _check_same_data(data, arch, encoding, trained_on, folder.path / CHECKPOINT)
        check_room(folder.path, 7 * _parameter_bytes(arch) + (4 << 20))  # models, checkpoint and its copy, pictures
        with StopSignals() as stop:
            return _train_into(folder.path, args, settings, arch, device, data, (params, moments, progress), stop)


class RunData(NamedTuple):
    dataset: Dataset
    train: Dataset  # a table's features scaled by encoding.scaling, as dev's
    dev: Dataset
    rng: np.random.Generator  # the seed's generator after the split: it draws the initial weights next
    encoding: Encoding  # the classes (and a table's columns and scaling) the model will store


def _check_weights_layer(layer: int, arch: Architecture) -> None:
    if layer > arch.n_layers:
        raise NNGpuError(f"--weights-layer {layer}: the network has layers 1 to {arch.n_layers}")


def _training_data(settings: dict, scaling: Scaling | None = None) -> RunData:
    """The run's data, split: DataError, before anything else is said of the data, when it has no labels
    or too few samples for the dev set. A table's features are scaled by `scaling` (a resumed run's),
    else by a scaling fitted on the training rows."""
    dataset = load_dataset(settings["data"], settings["label_column"])
    _labels(dataset, None)
    table = dataset.encoding is not None
    if settings["scale"] and not table:
        raise NNGpuError(f"--scale {settings['scale']}: scales a CSV table's features; digit images are divided by 255")
    if settings["augment"] and table:
        raise NNGpuError(f"--augment distorts 28 x 28 digit images; {dataset.source} holds a table of features")
    if settings["early_stopping"] and not settings["dev_size"]:
        raise NNGpuError("--early-stopping needs a dev set to watch: give --dev-size N above 0")
    if settings["momentum"] and settings["optimizer"] != "sgd":
        raise NNGpuError(f"--momentum is SGD's; --optimizer {settings['optimizer']} keeps its own moments: drop it")
    try:
        layer_rates(settings["dropout"], len(settings["hidden"]))
    except ValueError as error:
        raise NNGpuError(f"--dropout: {error}") from None
    rng = np.random.default_rng(settings["seed"])
    train_set, dev_set = split_dev(dataset, settings["dev_size"], rng)
    if not table:
        return RunData(dataset, train_set, dev_set, rng, Encoding(DIGITS))
    if scaling is None:
        try:
            scaling = Scaling.fit(settings["scale"] or "standard", train_set.images, dataset.encoding.features)
        except DataError as error:
            raise DataError(f"{dataset.source}: {error}") from None
    encoding = dataclasses.replace(dataset.encoding, scaling=scaling)
    train_set, dev_set = (dataclasses.replace(d, images=scaling.apply(d.images)) for d in (train_set, dev_set))
    return RunData(dataset, train_set, dev_set, rng, encoding)


def _check_same_data(
    data: RunData, arch: Architecture, encoding: Encoding, trained_on: TrainingData | None, path: Path
) -> None:
    """NNGpuError unless the data of a resumed run still has the saved network's inputs and classes and,
    where the checkpoint knows them, the same training rows in the same order."""
    n_inputs, classes = data.train.images.shape[1], data.encoding.classes
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


def _extended(settings: dict, length: dict, progress, args) -> dict:
    """The saved settings with the run's length changed to `length` ({"epochs": N} or {"iterations": N},
    from --resume's flags; {} keeps it): NNGpuError when the run cannot be extended to N bit-identically."""
    if not length:
        return settings
    ((unit, n),) = length.items()
    resume = f"--resume {args.resume}"
    trained_by = "epochs" if settings["epochs"] is not None else "iterations"
    if unit != trained_by:
        raise NNGpuError(
            f"{resume}: the run counts {trained_by} ({settings[trained_by]}); extend it with --{trained_by} N"
        )
    if n < settings[unit]:
        raise NNGpuError(
            f"{resume} --{unit} {n}: the run is {settings[unit]} {unit} long already; give more to extend it"
        )
    if settings["lr_schedule"] != "constant" and n != settings[unit]:
        raise NNGpuError(
            f"{resume} --{unit} {n}: the {settings['lr_schedule']} learning-rate schedule is laid out over the run's "
            f"length, so a longer run would have taken other steps from the start; train a new run of {n} {unit}"
        )
    if progress.stopped_early:
        raise NNGpuError(
            f"{resume}: the run stopped early at iteration {progress.iteration} (no better dev accuracy in "
            f"{settings['early_stopping']} evaluations): a longer run stops there too; its best model is {BEST_MODEL}"
        )
    return {**settings, unit: n}


def _threads_note(device: Device, threads: int) -> str:
    """How the CPU path will use the cores: what a user checks when training is slower than expected."""
    if device.name != "cpu":
        return ""
    cores = parallel.cores()
    return f"; {threads} thread{'s' * (threads > 1)} ({cores} core{'s' * (cores > 1)} usable), BLAS {parallel.blas_summary()} on one thread each"


def _refuse_new_settings(args) -> dict:
    """The new length --resume was given ({"epochs": N}, {"iterations": N} or {}); NNGpuError for any
    other setting, which the run keeps as it was saved."""
    defaults = train_parser().parse_args([])
    changed = [
        f"--{name.replace('_', '-')}"
        for name in RUN_SETTINGS
        if name not in LENGTH and getattr(args, name) != getattr(defaults, name)
    ]
    changed += ["--output-dir"] * bool(args.output_dir) + ["--dry-run"] * args.dry_run
    if changed:
        raise NNGpuError(f"--resume continues a run with the settings saved in it; drop {', '.join(changed)}")
    return {name: getattr(args, name) for name in LENGTH if getattr(args, name) is not None}


def _train_into(output_dir: Path, args, settings, arch, device, data, state, stop: StopSignals) -> int:
    """Train (from `state`: saved params, optimiser moments and progress, or Nones) and write the run into output_dir."""
    params, moments, progress = state
    dataset, train_set, dev_set, rng, encoding = data
    test_size = 0 if dataset.test is None else len(dataset.test)
    if encoding.table:
        _say(args.quiet, f"data: {dataset.source}: {len(train_set)} train, {len(dev_set)} dev rows; "
                         f"{arch.n_inputs} features ({encoding.scaling.kind} scaling), {arch.n_classes} classes in "
                         f"{encoding.label_column!r}")  # fmt: skip
    else:
        _say(args.quiet, f"data: {dataset.source}: {len(train_set)} train, {len(dev_set)} dev, {test_size} test images")
    _warn_if_trivial(train_set)
    network = Network(arch, device, params if params is not None else init_parameters(arch, settings["init"], rng))
    network.runner.threads = args.threads
    optimizer = make_optimizer(
        settings["optimizer"],
        network,
        settings["momentum"],
        settings["weight_decay"],
        moments,
        0 if progress is None else progress.iteration,
    )
    if progress is not None and progress.best_params is not None:
        progress.best_params = device.to_device(progress.best_params)
    X, y = pixels_to_device(train_set.images, device, arch.dtype), _labels(train_set, device)
    dev = (pixels_to_device(dev_set.images, device, arch.dtype), _labels(dev_set, device)) if len(dev_set) else None
    plan = TrainingPlan(**{field.name: settings[field.name] for field in fields(TrainingPlan)})
    default_batch = args.epochs is not None and args.batch_size is None
    _say(args.quiet, _plan_line(plan, len(train_set), default_batch, train_set.unit))
    trained_on = TrainingData(dataset.source, train_set.hashes)
    saved_at = None if progress is None else progress.iteration  # the checkpoint on disk: a resumed run's

    def save(progress):
        nonlocal saved_at
        params = [device.to_host(p) for p in network.params]
        best = network.flat if progress.best_params is None else progress.best_params
        moments = [device.to_host(moment) for moment in optimizer.state]
        path = output_dir / CHECKPOINT
        try:
            save_checkpoint(path, arch, params, moments, device.to_host(best), progress, settings, encoding, trained_on)
        except OSError as error:  # written beside it and renamed over it: the one on disk is whole
            kept = (
                f"the checkpoint of iteration {saved_at} is intact; free some space and resume with "
                f"{args.prog} --resume {output_dir}"
                if saved_at is not None
                else "no checkpoint was saved before it; free some space and train again"
            )
            raise NNGpuError(
                f"{path}: cannot save the checkpoint of iteration {progress.iteration} "
                f"({(error.strerror or str(error)).lower()}); {kept}"
            ) from None
        saved_at = progress.iteration
        return path

    history = [] if progress is None else progress.history
    with MetricsLog(output_dir, history, 0 if progress is None else progress.iteration, args.tensorboard) as log:
        try:
            result = _train_with_progress(
                network, optimizer, X, y, dev, plan, settings["seed"], progress, save, args, log, stop
            )
        except Interrupted as stopped:
            raise Interrupted(
                f"{stopped.when}; resume with {args.prog} --resume {output_dir}", stopped.signum
            ) from None
    test = dataset.test
    if test is not None and test.labels is not None:
        test_loss, test_accuracy = network.evaluate(
            pixels_to_device(test.images, device, arch.dtype), _labels(test, device)
        )
        result.final.update(test_loss=test_loss, test_accuracy=test_accuracy)
    if stop.received():  # a signal during the final evaluation: the weights are trained, keep them resumable
        stop.check(f"after the last iteration, {result.iteration}; checkpoint saved to {save(result)}; "
                   f"finish with {args.prog} --resume {output_dir}")  # fmt: skip
    metrics = {
        "device": device.name,
        "device_index": device.index,
        "device_name": device.card_name,
        "device_description": device.describe(),
        "threads": network.runner.threads,
        "blas": parallel.blas_summary(),
        **settings,
        "data": dataset.source,
        "inputs": arch.n_inputs,
        "classes": encoding.classes.tolist(),
        "iterations": result.iteration,
        "planned_iterations": plan.total_iterations(len(train_set)),
        "stopped_early": result.stopped_early,
        "train_size": len(train_set),
        "dev_size": len(dev_set),
        "test_size": test_size,
        "train_seconds": result.train_seconds,
        "samples_per_second": result.samples_per_second,
        "final": result.final,
        "best": {"iteration": result.best_iteration, "dev_accuracy": result.best_dev_accuracy},
        "history": result.history,
    }
    pictures = []
    if settings["augment"]:
        shown = plots.spread(train_set.labels, 8)
        distortion = AUGMENTATIONS[settings["augment"]]
        pictures.append(("augmentations.png", lambda: plots.augmentations(
            train_set.images[shown], train_set.labels[shown], distortion, settings["seed"])))  # fmt: skip
    written = _write_results(
        output_dir, network, result.best_params, (trained_on, encoding), metrics, dev_set, dev, args, stop, pictures
    )
    print(_summary(metrics, output_dir, written, args.prog))
    _warn_if_too_good(train_set, result.final)
    return 0


def _plan_line(plan: TrainingPlan, m: int, default_batch: bool, unit: str) -> str:
    """What the run will do, said before it starts: e.g. '10 epochs of 63 mini-batches of 64 (the
    default with --epochs; --batch-size N to change it), evaluated once an epoch'."""
    every = plan.evaluate_every(m)
    batches = plan.batches_per_epoch(m)
    if plan.epochs is not None:
        default = " (the default with --epochs; --batch-size N to change it)" if default_batch else ""
        what = f"{plan.epochs} epoch{'s' * (plan.epochs > 1)} of {batches} mini-batches of {plan.batch_size}{default}"
    elif plan.batch_size is None:
        what = f"{plan.iterations} full-batch gradient steps on all {m} {unit}"
    else:
        what = f"{plan.iterations} steps on mini-batches of {plan.batch_size} ({batches} an epoch)"
    when = (
        "only at the end"
        if not every
        else "once an epoch"
        if plan.epochs and every == batches
        else f"every {every} steps"
    )
    stopping = (
        f"; stop after {plan.early_stopping} evaluations without a better dev accuracy" if plan.early_stopping else ""
    )
    extras = [f"dropout {','.join(f'{p:g}' for p in plan.dropout)}"] if plan.dropout else []
    extras += [f"{plan.augment} distortions of each batch"] if plan.augment else []
    extras += [f"label smoothing {plan.label_smoothing:g}"] if plan.label_smoothing else []
    return f"training: {what}, evaluated {when}{stopping}" + "".join(f"; {extra}" for extra in extras)


def warn(text: str) -> None:
    """A warning on stderr: the run goes on."""
    print(f"warning: {text}", file=sys.stderr)


def _warn_if_trivial(train_set) -> None:
    """Say loudly when the labels cannot be a real problem: the sign of a pixel column read as the labels."""
    if train_set.labels is not None and len(train_set) > 1 and len(np.unique(train_set.labels)) == 1:
        label = train_set.classes[train_set.labels[0]]
        column = "a pixel column" if train_set.encoding is None else "the right column (--label-column)"
        warn(f"{train_set.source}: every training label is {label}: the accuracy will mean nothing; is {column} "
             "being read as the label?")  # fmt: skip


def _warn_if_too_good(train_set, final: dict) -> None:
    classes = 0 if train_set.labels is None else len(np.unique(train_set.labels))
    if final.get("dev_accuracy") == 1.0 and classes < 3:
        warn(f"dev accuracy 100.00% with only {classes} label value(s) in training: a trivial problem, not a result")


def _write_results(
    output_dir: Path,
    network: Network,
    best,
    saved_with: tuple[TrainingData, Encoding],
    metrics: dict,
    dev_set,
    dev,
    args,
    stop,
    pictures=(),
) -> list[Path]:
    """model.npz (the last parameters), best_model.npz (those at the best dev accuracy, `best`, when
    there is a dev set), each with `saved_with` (what it was trained on, the data's Encoding), metrics.json, then the pictures (and `pictures`: more (name, draw) pairs); the
    paths written. A write that fails ends in
    one line saying what was saved, and where (the models are rescued into the temporary folder when
    model.npz cannot be written in output_dir); a signal stops the pictures, never the models or the metrics."""
    arch, params = network.arch, [network.device.to_host(p) for p in network.params]
    models = {"model.npz": params}
    if best is not None:
        models[BEST_MODEL] = Network.views(network.device.to_host(best), params)
    written = []
    try:
        for name, saved in models.items():
            save_model(output_dir / name, arch, saved, *saved_with)
            written.append(output_dir / name)
        write_text_atomically(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        written.append(output_dir / "metrics.json")
        written += _draw_run(output_dir, network, metrics["history"], dev_set, dev, args.weights_layer, stop, pictures)
    except OSError as error:
        failed = f"{error.filename}: {error.strerror or error}"
        if written:
            raise NNGpuError(f"{failed}; saved: {', '.join(map(str, written))}") from None
        try:
            rescue = Path(tempfile.mkdtemp(prefix="nn_gpu-rescue-"))
            for name, saved in models.items():
                save_model(rescue / name, arch, saved, *saved_with)
        except OSError as second:
            raise NNGpuError(
                f"{failed}; the trained model could not be saved anywhere (the temporary folder failed too: {second})"
            ) from None
        best_too = f"the best weights were saved to {rescue / BEST_MODEL} and " if best is not None else ""
        raise NNGpuError(f"{failed}; {best_too}the trained model was saved to {rescue / 'model.npz'} instead") from None
    return written


def _draw_run(
    output_dir: Path, network: Network, history: list[dict], dev_set, dev, layer: int, stop, pictures=()
) -> list[Path]:
    """confusion_matrix.json, and the pictures of nn_gpu.plots when matplotlib is there; the paths written.
    A signal stops the drawing between two pictures (Interrupted)."""
    written = []
    saved = f"the models and metrics.json are saved in {output_dir}"
    if dev is not None:
        probabilities = network.predict_proba(dev[0])  # C x m_dev
        predictions, confidence = probabilities.argmax(axis=0), probabilities.max(axis=0)
        counts = plots.confusion_counts(dev_set.labels, predictions, network.arch.n_classes)
        summary = json.dumps(plots.confusion_summary(counts, dev_set.classes), indent=2) + "\n"
        write_text_atomically(output_dir / "confusion_matrix.json", summary)
        written.append(output_dir / "confusion_matrix.json")
    if not plots.available():
        print(f"pictures skipped: matplotlib is not installed ({plots.PLOT_HINT})")
        return written
    W = [network.device.to_host(W) for W in network.W]
    images = network.arch.images and dev_set.encoding is None
    drawings = [("training_curves.png", lambda: plots.training_curves(history))]
    drawings += [("weights.png", lambda: plots.weights(W, layer))] if images else []
    if dev is not None:
        n = min(32, len(dev_set))
        drawings.append(("confusion_matrix.png", lambda: plots.confusion_matrix(counts, dev_set.classes)))
        if images:
            drawings.append((
                "predictions.png",
                lambda: plots.predictions_grid(dev_set.images[:n], predictions[:n], confidence[:n], dev_set.labels[:n]),
            ))  # fmt: skip
    if not images:
        print(f"weights.png and predictions.png skipped: the {network.arch.n_inputs} inputs are not 28 x 28 images")
    for name, draw in [*drawings, *pictures]:
        stop.check(f"while drawing the pictures; {saved}")
        plots.save(draw(), output_dir / name)
        written.append(output_dir / name)
    return written


def _train_with_progress(network, optimizer, X, y, dev, plan, seed, progress, save, args, log: MetricsLog, stop):
    """train(), with a progress bar on a terminal (the last loss and accuracy, samples/s), log lines,
    each evaluation streamed to `log`, and a stop signal turned into a checkpoint."""
    from tqdm import tqdm

    total = plan.total_iterations(X.shape[1])
    done = 0 if progress is None else progress.iteration
    bar = tqdm(total=total, initial=done, disable=True if args.quiet else None, unit="it", leave=False)
    last: dict = {}

    def steps(count: int, samples: int) -> None:  # the bar's rate in samples/s: a slowdown shows the moment it happens
        bar.update(count)
        if not bar.disable and (rate := bar.format_dict["rate"]):  # format_dict is rebuilt on each read
            bar.set_postfix_str(bar_postfix(last, samples / count * rate), refresh=False)

    def logged(entry: dict) -> None:
        last.update(entry)
        log.write(entry)
        _say(args.quiet, log_line(entry), bar.write)

    _say(args.quiet, LOG_LEGEND)
    with bar:
        return train(
            network,
            optimizer,
            X,
            y,
            dev,
            plan,
            seed,
            progress,
            on_log=logged,
            on_steps=steps,
            save=save,
            stop_requested=stop.received,
            graphs=not args.no_graph,
        )


def bar_postfix(entry: dict, samples_per_second: float) -> str:
    """The progress bar's figures: the last logged train loss and accuracy, and the speed now."""
    figures = [] if not entry else [f"loss {entry['train_loss']:.4f}", f"acc {percent(entry['train_accuracy'])}"]
    return ", ".join([*figures, f"{samples_per_second:,.0f} samples/s"])


def _summary(metrics: dict, output_dir: Path, written: list[Path], prog: str) -> str:
    final, best = metrics["final"], metrics["best"]
    stopped = (
        f" (stopped early: no better dev accuracy in {metrics['early_stopping']} evaluations)"
        if metrics["stopped_early"]
        else ""
    )
    lines = [
        f"done: {metrics['iterations']} iterations in {metrics['train_seconds']:.2f} s on {metrics['device_description']} "
        f"({metrics['samples_per_second']:,.0f} samples/s){stopped}",
        f"last: train accuracy {percent(final['train_accuracy'])}, dev accuracy {percent(final['dev_accuracy'])}, "
        f"train loss {final['train_loss']:.4f}",
    ]
    if "test_accuracy" in final:
        lines.append(
            f"test accuracy {percent(final['test_accuracy'])} (the held-out t10k set, last weights), "
            f"test loss {final['test_loss']:.4f}"
        )
    names = ", ".join(p.name for p in written)
    lines.append(f"wrote to {output_dir}: {names}")
    if best["iteration"] is not None:
        lines.append(
            f"best dev accuracy {percent(best['dev_accuracy'])} at iteration {best['iteration']}: "
            f"{BEST_MODEL} holds those weights, model.npz the last"
        )
        model = output_dir / BEST_MODEL
    else:
        model = output_dir / "model.npz"
    lines.append(f"predict with: {prog.replace('train', 'predict')} --model {model} --data FILE --out submission.csv")
    return "\n".join(lines)


def train_main(argv: list[str] | None = None, prog: str = "train.py") -> int:
    """`python scripts/train.py [flags]` (prog names the command typed, for usage lines and hints):
    train and write best_model.npz, model.npz and the metrics."""
    return run_main(lambda argv: train_command(argv, prog), argv)
