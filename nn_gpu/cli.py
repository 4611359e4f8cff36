"""The command line of scripts/train.py (`train_main`), and what it shares with scripts/predict.py.

Every error a user can cause ends as one line on stderr and exit code 2 (see nn_gpu.errors); a
diverged run ends with exit code 3. Ctrl-C, SIGTERM and SIGHUP stop training at the next step, save
a checkpoint and exit with 128 + the signal's number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nn_gpu import parallel, plots
from nn_gpu.checkpoint import load_checkpoint, save_checkpoint, save_model
from nn_gpu.data import SAMPLE, load_dataset, pixels_to_device, split_dev
from nn_gpu.device import (
    DEVICE_CHOICES,
    Device,
    gpu_unavailable_reason,
    out_of_memory_error,
    parse_device,
    resolve_device,
)
from nn_gpu.download import REMOTES
from nn_gpu.errors import DataError, DeviceError, ModelFileError, NNGpuError, one_line
from nn_gpu.model import DTYPES, INITS, Architecture, Network, init_parameters
from nn_gpu.optim import SCHEDULES, SGD
from nn_gpu.outputs import check_room, claim, new_run_folder
from nn_gpu.safe_io import write_text_atomically
from nn_gpu.training import Interrupted, TrainingPlan, log_line, percent, train

DRY_RUN_ITERATIONS = 3
CHECKPOINT = "checkpoint.npz"


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


def train_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="train.py",
        description="Train the notebook's digit network (784 -> hidden ReLU -> 10 softmax) with hand-written backpropagation.",
    )
    p.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="auto: card 0 if usable, else the CPU (default); cpu; gpu (card 0) or gpu:N",
    )
    p.add_argument(
        "--data",
        default=SAMPLE,
        help="a CSV (Kaggle's or label-first), an IDX file or folder, 'mnist', 'fashion-mnist', "
        "or 'sample' (default: 5,000 built-in MNIST digits)",
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
    length.add_argument("--iterations", type=positive_int, default=500, help="gradient steps (default 500)")
    length.add_argument("--epochs", type=positive_int, help="passes over the training set, instead of --iterations")
    p.add_argument("--init", choices=INITS, default="he", help="he (default) or uniform, the notebook's U(-0.5, 0.5)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--batch-size", type=positive_int, help="mini-batch size (default: the full training set)")
    p.add_argument(
        "--momentum", type=_momentum, default=0.0, help="SGD momentum in [0, 1), v := momentum v + g (default 0)"
    )
    p.add_argument(
        "--weight-decay", type=_weight_decay, default=0.0, help="L2 weight decay added to each gradient (default 0)"
    )
    p.add_argument("--lr-schedule", choices=SCHEDULES, default="constant", help="constant (default), step or cosine")
    p.add_argument(
        "--save-every",
        type=non_negative_int,
        default=0,
        help="save DIR/checkpoint.npz every N iterations (default 0: off)",
    )
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue the run saved in DIR/checkpoint.npz")
    p.add_argument(
        "--log-interval",
        type=non_negative_int,
        default=10,
        help="evaluate every N iterations, 0 for only at the end (default 10)",
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
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument("--output-dir", type=Path, help="where model.npz and metrics.json go (default runs/<timestamp>)")
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
    except NNGpuError as error:
        say(error)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # an output that cannot be written: a missing folder, no permission, a full disk
        say(f"{error.filename}: {error.strerror or error}" if error.filename else error.strerror or error)
        return 2
    except MemoryError as error:
        say(f"not enough memory ({error or 'the allocation failed'})")
        return 2
    except Exception as error:
        oom = out_of_memory_error(error)
        if oom is None:
            raise
        say(oom)
        return oom.exit_code


def _say(quiet: bool, text: str, write=print) -> None:
    if not quiet:
        write(text)


def _labels(dataset, device: Device):
    if dataset.labels is None:
        raise DataError(
            f"{dataset.source}: has no labels (no label column, or no IDX labels file beside the images); training needs labels"
        )
    return device.to_device(dataset.labels.astype(np.int32))


# The flags that define a run; a checkpoint stores them, and --resume takes them from it.
RUN_SETTINGS = (
    "data", "dev_size", "seed", "hidden", "alpha", "iterations", "epochs", "init", "dtype", "batch_size",
    "log_interval", "momentum", "weight_decay", "lr_schedule", "save_every",
)  # fmt: skip


def _run_settings(args) -> dict:
    settings = {name: getattr(args, name) for name in RUN_SETTINGS}
    settings["hidden"] = list(args.hidden)
    if settings["data"] not in (SAMPLE, *REMOTES):  # a path: keep it valid from any working directory
        settings["data"] = os.path.abspath(settings["data"])  # not resolve(): load_dataset names a symlink loop
    if args.dry_run:
        settings.update(iterations=DRY_RUN_ITERATIONS, epochs=None)
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
    missing = [name for name in RUN_SETTINGS if name not in config]
    if missing:
        raise ModelFileError(f"{path}: damaged training state (settings missing: {', '.join(missing)})")
    argv = []
    for name in RUN_SETTINGS:
        value = config[name]
        if value is None or (name == "iterations" and config["epochs"] is not None):
            continue
        if name == "hidden" and isinstance(value, list):
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
    """Refuse, before allocating, a network whose parameters, gradients and velocity cannot fit in memory."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: MemoryError will say it
        return
    needed = 4 * _parameter_bytes(arch)  # parameters, gradients, velocity, and a host copy
    if device.name == "cpu" and needed > memory:
        hidden = ",".join(map(str, arch.hidden))
        raise NNGpuError(
            f"--hidden {hidden}: the parameters, gradients and momentum need {needed / 1e9:.1f} GB, "
            f"more than this machine's {memory / 1e9:.1f} GB of memory; choose smaller layers"
        )


def train_command(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    if args.resume and args.overwrite:
        raise NNGpuError("--overwrite replaces a run and --resume continues one: choose one")
    device = resolve_device(args.device)
    fallback = gpu_unavailable_reason() if args.device == "auto" and device.name == "cpu" else None
    args.threads = args.threads or parallel.cores()
    print(
        f"device: {device.describe()}"
        + (f"; GPU not used: {fallback}" if fallback else "")
        + _threads_note(device, args.threads)
    )
    params = velocity = progress = None
    if args.resume:
        _refuse_new_settings(args)
        if not args.resume.is_dir():
            raise NNGpuError(f"--resume {args.resume}: no such folder")
        folder = claim(args.resume, resume=True)
    else:
        settings = _run_settings(args)
        arch = Architecture(tuple(settings["hidden"]), settings["dtype"])
        _check_size(arch, device)
        dataset = load_dataset(settings["data"])  # a bad file is refused before any folder is made
        folder = claim(args.output_dir, overwrite=args.overwrite) if args.output_dir else claim(new_run_folder())
    with folder:
        if args.resume:
            arch, params, velocity, progress, config = load_checkpoint(folder.path / CHECKPOINT)
            settings = _saved_settings(config, folder.path / CHECKPOINT, arch)
            _say(args.quiet, f"resuming {folder.path / CHECKPOINT} after iteration {progress.iteration}")
            dataset = load_dataset(settings["data"])
        check_room(folder.path, 5 * _parameter_bytes(arch) + (4 << 20))  # model, checkpoint and its copy, pictures
        with StopSignals() as stop:
            return _train_into(folder.path, args, settings, arch, device, dataset, (params, velocity, progress), stop)


def _threads_note(device: Device, threads: int) -> str:
    """How the CPU path will use the cores: what a user checks when training is slower than expected."""
    if device.name != "cpu":
        return ""
    cores = parallel.cores()
    return f"; {threads} thread{'s' * (threads > 1)} ({cores} core{'s' * (cores > 1)} usable), BLAS {parallel.blas_summary()} on one thread each"


def _refuse_new_settings(args) -> None:
    defaults = train_parser().parse_args([])
    changed = [f"--{name.replace('_', '-')}" for name in RUN_SETTINGS if getattr(args, name) != getattr(defaults, name)]
    changed += ["--output-dir"] * bool(args.output_dir) + ["--dry-run"] * args.dry_run
    if changed:
        raise NNGpuError(f"--resume continues a run with the settings saved in it; drop {', '.join(changed)}")


def _train_into(output_dir: Path, args, settings, arch, device, dataset, state, stop: StopSignals) -> int:
    """Train (from `state`: saved params, velocity and progress, or Nones) and write the run into output_dir."""
    params, velocity, progress = state
    rng = np.random.default_rng(settings["seed"])
    train_set, dev_set = split_dev(dataset, settings["dev_size"], rng)
    test_size = 0 if dataset.test is None else len(dataset.test)
    _say(args.quiet, f"data: {dataset.source}: {len(train_set)} train, {len(dev_set)} dev, {test_size} test images")
    _warn_if_trivial(train_set)
    network = Network(arch, device, params if params is not None else init_parameters(arch, settings["init"], rng))
    network.runner.threads = args.threads
    optimizer = SGD(network, settings["momentum"], settings["weight_decay"], velocity)
    X, y = pixels_to_device(train_set.images, device, arch.dtype), _labels(train_set, device)
    dev = (pixels_to_device(dev_set.images, device, arch.dtype), _labels(dev_set, device)) if len(dev_set) else None
    plan = TrainingPlan(
        alpha=settings["alpha"],
        iterations=settings["iterations"],
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        log_interval=settings["log_interval"],
        lr_schedule=settings["lr_schedule"],
        save_every=settings["save_every"],
    )

    def save(progress):
        params = [device.to_host(p) for p in network.params]
        save_checkpoint(output_dir / CHECKPOINT, arch, params, device.to_host(optimizer.velocity), progress, settings)
        return output_dir / CHECKPOINT

    result = _train_with_progress(
        network, optimizer, X, y, dev, plan, settings["seed"], progress, save, args.quiet, stop
    )
    test = dataset.test
    if test is not None and test.labels is not None:
        test_loss, test_accuracy = network.evaluate(
            pixels_to_device(test.images, device, arch.dtype), _labels(test, device)
        )
        result.final.update(test_loss=test_loss, test_accuracy=test_accuracy)
    if stop.received():  # a signal during the final evaluation: the weights are trained, keep them resumable
        stop.check(f"after the last iteration, {result.iteration}; checkpoint saved to {save(result)}; "
                   f"finish with --resume {output_dir}")  # fmt: skip
    metrics = {
        "device": device.name,
        "device_index": device.index,
        "device_name": device.card_name,
        "device_description": device.describe(),
        "threads": network.runner.threads,
        "blas": parallel.blas_summary(),
        **settings,
        "data": dataset.source,
        "iterations": plan.total_iterations(len(train_set)),
        "train_size": len(train_set),
        "dev_size": len(dev_set),
        "test_size": test_size,
        "train_seconds": result.train_seconds,
        "samples_per_second": result.samples_per_second,
        "final": result.final,
        "history": result.history,
    }
    written = _write_results(output_dir, network, metrics, dev_set, dev, stop)
    print(_summary(metrics, output_dir, written))
    _warn_if_too_good(train_set, result.final)
    return 0


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def _warn_if_trivial(train_set) -> None:
    """Say loudly when the labels cannot be a digit problem: the sign of a pixel column read as the labels."""
    if train_set.labels is not None and len(train_set) > 1 and len(np.unique(train_set.labels)) == 1:
        _warn(
            f"{train_set.source}: every training label is {train_set.labels[0]}: the accuracy will mean nothing; "
            "is a pixel column being read as the label?"
        )


def _warn_if_too_good(train_set, final: dict) -> None:
    classes = 0 if train_set.labels is None else len(np.unique(train_set.labels))
    if final.get("dev_accuracy") == 1.0 and classes < 3:
        _warn(f"dev accuracy 100.00% with only {classes} label value(s) in training: a trivial problem, not a result")


def _write_results(output_dir: Path, network: Network, metrics: dict, dev_set, dev, stop: StopSignals) -> list[Path]:
    """model.npz, metrics.json, then the pictures; the paths written. A write that fails ends in one line
    saying what was saved, and where (model.npz is rescued into the temporary folder when it cannot be
    written in output_dir); a signal stops the pictures, never the model or the metrics."""
    arch, params = network.arch, [network.device.to_host(p) for p in network.params]
    written = []
    try:
        save_model(output_dir / "model.npz", arch, params)
        written.append(output_dir / "model.npz")
        write_text_atomically(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        written.append(output_dir / "metrics.json")
        written += _draw_run(output_dir, network, metrics["history"], dev_set, dev, stop)
    except OSError as error:
        failed = f"{error.filename}: {error.strerror or error}"
        if written:
            raise NNGpuError(f"{failed}; saved: {', '.join(map(str, written))}") from None
        try:
            rescue = Path(tempfile.mkdtemp(prefix="nn_gpu-rescue-")) / "model.npz"
            save_model(rescue, arch, params)
        except OSError as second:
            raise NNGpuError(
                f"{failed}; the trained model could not be saved anywhere (the temporary folder failed too: {second})"
            ) from None
        raise NNGpuError(f"{failed}; the trained model was saved to {rescue} instead") from None
    return written


def _draw_run(output_dir: Path, network: Network, history: list[dict], dev_set, dev, stop: StopSignals) -> list[Path]:
    """confusion_matrix.json, and the pictures of nn_gpu.plots when matplotlib is there; the paths written.
    A signal stops the drawing between two pictures (Interrupted)."""
    written = []
    saved = f"model.npz and metrics.json are saved in {output_dir}"
    if dev is not None:
        probabilities = network.predict_proba(dev[0])  # 10 x m_dev
        predictions, confidence = probabilities.argmax(axis=0), probabilities.max(axis=0)
        counts = plots.confusion_counts(dev_set.labels, predictions)
        summary = json.dumps(plots.confusion_summary(counts), indent=2) + "\n"
        write_text_atomically(output_dir / "confusion_matrix.json", summary)
        written.append(output_dir / "confusion_matrix.json")
    if not plots.available():
        print(f"pictures skipped: matplotlib is not installed ({plots.PLOT_HINT})")
        return written
    W1, hidden = network.W[0], network.W[0].shape[0]
    if hidden > plots.WEIGHT_UNITS:
        print(f"weights.png shows the first {plots.WEIGHT_UNITS} of the {hidden} hidden units")
    drawings = [
        ("training_curves.png", lambda: plots.training_curves(history)),
        ("weights.png", lambda: plots.weights(network.device.to_host(W1[: plots.WEIGHT_UNITS]), hidden)),
    ]
    if dev is not None:
        n = min(32, len(dev_set))
        drawings += [
            ("confusion_matrix.png", lambda: plots.confusion_matrix(counts)),
            (
                "predictions.png",
                lambda: plots.predictions_grid(dev_set.images[:n], predictions[:n], confidence[:n], dev_set.labels[:n]),
            ),
        ]
    for name, draw in drawings:
        stop.check(f"while drawing the pictures; {saved}")
        plots.save(draw(), output_dir / name)
        written.append(output_dir / name)
    return written


def _train_with_progress(network, optimizer, X, y, dev, plan, seed, progress, save, quiet, stop: StopSignals):
    """train(), with a progress bar on a terminal, log lines, and a stop signal turned into a checkpoint."""
    from tqdm import tqdm

    total = plan.total_iterations(X.shape[1])
    done = 0 if progress is None else progress.iteration
    bar = tqdm(total=total, initial=done, disable=True if quiet else None, unit="it", leave=False)

    def step(samples: int) -> None:  # the bar's rate in samples/s: a slowdown shows the moment it happens
        bar.update()
        if not bar.disable and (rate := bar.format_dict["rate"]):  # format_dict is rebuilt on each read
            bar.set_postfix_str(f"{samples * rate:,.0f} samples/s", refresh=False)

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
            on_log=lambda entry: _say(quiet, log_line(entry), bar.write),
            on_step=step,
            save=save,
            stop_requested=stop.received,
        )


def _summary(metrics: dict, output_dir: Path, written: list[Path]) -> str:
    final = metrics["final"]
    dev = [e for e in metrics["history"] if e["dev_accuracy"] is not None]
    best = max(dev, key=lambda e: e["dev_accuracy"], default=None)
    lines = [
        f"done: {metrics['iterations']} iterations in {metrics['train_seconds']:.2f} s on {metrics['device_description']} "
        f"({metrics['samples_per_second']:,.0f} samples/s)",
        f"final: train accuracy {percent(final['train_accuracy'])}, dev accuracy {percent(final['dev_accuracy'])}, "
        f"train loss {final['train_loss']:.4f}",
    ]
    if "test_accuracy" in final:
        lines.append(
            f"test accuracy {percent(final['test_accuracy'])} (the held-out t10k set), test loss {final['test_loss']:.4f}"
        )
    if best is not None:
        lines.append(f"best dev accuracy {percent(best['dev_accuracy'])} at iteration {best['iteration']}")
    names = ", ".join(p.name for p in written)
    lines.append(f"wrote to {output_dir}: {names}")
    return "\n".join(lines)


def train_main(argv: list[str] | None = None) -> int:
    """`python scripts/train.py [flags]`: train and write model.npz and metrics.json."""
    return run_main(train_command, argv)
