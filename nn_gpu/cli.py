"""The command line of scripts/train.py (`train_main`), and what it shares with scripts/predict.py.

Every error a user can cause ends as one line on stderr and exit code 2 (see nn_gpu.errors); a
diverged run ends with exit code 3, Ctrl-C with 130.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nn_gpu import plots
from nn_gpu.checkpoint import load_checkpoint, save_checkpoint, save_model
from nn_gpu.data import SAMPLE, load_dataset, split_dev, to_inputs
from nn_gpu.device import (
    DEVICE_CHOICES,
    Device,
    gpu_unavailable_reason,
    out_of_memory_error,
    parse_device,
    resolve_device,
)
from nn_gpu.download import REMOTES
from nn_gpu.errors import DataError, DeviceError, NNGpuError
from nn_gpu.files import write_text_atomically
from nn_gpu.model import INITS, Architecture, Network, init_parameters
from nn_gpu.optim import SCHEDULES, SGD
from nn_gpu.training import Schedule, train

DRY_RUN_ITERATIONS = 3
CHECKPOINT = "checkpoint.npz"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def device_name(text: str) -> str:
    """`--device`: auto, cpu, gpu or gpu:N, checked here; nn_gpu.device resolves it."""
    try:
        parse_device(text)
    except DeviceError:
        raise argparse.ArgumentTypeError(f"expected {DEVICE_CHOICES}, got {text!r}") from None
    return text


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 10 or 256,128, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"every width must be at least 1, got {text!r}")
    return widths


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    p.add_argument("--hidden", type=_widths, default=(10,), help="hidden layer widths, e.g. 10 or 256,128 (default 10)")
    p.add_argument("--alpha", "--lr", type=float, default=0.10, help="learning rate (default 0.10)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--iterations", type=_positive_int, default=500, help="gradient steps (default 500)")
    length.add_argument("--epochs", type=_positive_int, help="passes over the training set, instead of --iterations")
    p.add_argument("--init", choices=INITS, default="he", help="he (default) or uniform, the notebook's U(-0.5, 0.5)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--batch-size", type=_positive_int, help="mini-batch size (default: the full training set)")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum, v := momentum v + g (default 0)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay added to each gradient (default 0)")
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
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument("--output-dir", type=Path, help="where model.npz and metrics.json go (default runs/<timestamp>)")
    return p


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run `main`, turning nn_gpu errors, unwritable outputs, GPU out-of-memory and Ctrl-C into one
    line and an exit code."""
    try:
        return main(argv)
    except NNGpuError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # an output that cannot be written: a missing folder, no permission, a full disk
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except Exception as error:
        oom = out_of_memory_error(error)
        if oom is None:
            raise
        print(f"error: {oom}", file=sys.stderr)
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
        settings["data"] = str(Path(settings["data"]).resolve())
    if args.dry_run:
        settings.update(iterations=DRY_RUN_ITERATIONS, epochs=None)
    return settings


def train_command(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    device = resolve_device(args.device)
    fallback = gpu_unavailable_reason() if args.device == "auto" and device.name == "cpu" else None
    print(f"device: {device.describe()}" + (f"; GPU not used: {fallback}" if fallback else ""))
    params = velocity = progress = None
    if args.resume:
        defaults = train_parser().parse_args([])
        changed = [
            f"--{name.replace('_', '-')}" for name in RUN_SETTINGS if getattr(args, name) != getattr(defaults, name)
        ]
        if changed or args.output_dir or args.dry_run:
            changed += ["--output-dir"] * bool(args.output_dir) + ["--dry-run"] * args.dry_run
            raise NNGpuError(f"--resume continues a run with the settings saved in it; drop {', '.join(changed)}")
        output_dir = args.resume
        arch, params, velocity, progress, settings = load_checkpoint(output_dir / CHECKPOINT)
        _say(args.quiet, f"resuming {output_dir / CHECKPOINT} after iteration {progress.iteration}")
    else:
        output_dir = args.output_dir or Path("runs") / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        settings = _run_settings(args)
        arch = Architecture(tuple(settings["hidden"]), settings["dtype"])
    rng = np.random.default_rng(settings["seed"])
    dataset = load_dataset(settings["data"])
    train_set, dev_set = split_dev(dataset, settings["dev_size"], rng)
    test_size = 0 if dataset.test is None else len(dataset.test)
    _say(args.quiet, f"data: {dataset.source}: {len(train_set)} train, {len(dev_set)} dev, {test_size} test images")
    network = Network(arch, device, params if params is not None else init_parameters(arch, settings["init"], rng))
    optimizer = SGD(network, settings["momentum"], settings["weight_decay"], velocity)
    X, y = to_inputs(train_set.images, device, arch.dtype), _labels(train_set, device)
    dev = (to_inputs(dev_set.images, device, arch.dtype), _labels(dev_set, device)) if len(dev_set) else None
    schedule = Schedule(
        alpha=settings["alpha"],
        iterations=settings["iterations"],
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        log_interval=settings["log_interval"],
        lr_schedule=settings["lr_schedule"],
        save_every=settings["save_every"],
    )

    def save(progress):
        output_dir.mkdir(parents=True, exist_ok=True)
        params = [device.to_host(p) for p in network.params]
        save_checkpoint(output_dir / CHECKPOINT, arch, params, device.to_host(optimizer.velocity), progress, settings)
        return output_dir / CHECKPOINT

    result = _train_with_progress(network, optimizer, X, y, dev, schedule, settings["seed"], progress, save, args.quiet)
    test = dataset.test
    if test is not None and test.labels is not None:
        test_loss, test_accuracy = network.evaluate(to_inputs(test.images, device, arch.dtype), _labels(test, device))
        result.final.update(test_loss=test_loss, test_accuracy=test_accuracy)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_model(output_dir / "model.npz", arch, [device.to_host(p) for p in network.params])
    metrics = {
        "device": device.name,
        "device_index": device.index,
        "device_name": device.card_name,
        "device_description": device.describe(),
        **settings,
        "data": dataset.source,
        "iterations": schedule.total_iterations(len(train_set)),
        "train_size": len(train_set),
        "dev_size": len(dev_set),
        "test_size": test_size,
        "train_seconds": result.train_seconds,
        "samples_per_second": result.samples_per_second,
        "final": result.final,
        "history": result.history,
    }
    write_text_atomically(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    pictures = _draw_run(output_dir, network, result.history, dev_set, dev)
    print(_summary(metrics, output_dir, pictures))
    return 0


def _draw_run(output_dir: Path, network: Network, history: list[dict], dev_set, dev) -> list[Path]:
    """confusion_matrix.json, and the pictures of nn_gpu.plots when matplotlib is there; the paths written."""
    written = []
    if dev is not None:
        probabilities = network.predict_proba(dev[0])  # 10 x m_dev
        predictions, confidence = probabilities.argmax(axis=0), probabilities.max(axis=0)
        counts = plots.confusion_counts(dev_set.labels, predictions)
        summary = json.dumps(plots.confusion_summary(counts), indent=2) + "\n"
        write_text_atomically(output_dir / "confusion_matrix.json", summary)
        written.append(output_dir / "confusion_matrix.json")
    plt = plots.load_pyplot()
    if plt is None:
        print(f"pictures skipped: matplotlib is not installed ({plots.PLOT_HINT})")
        return written
    plots.training_curves(plt, history, output_dir / "training_curves.png")
    plots.weights(plt, network.device.to_host(network.W[0]), output_dir / "weights.png")
    written += [output_dir / "training_curves.png", output_dir / "weights.png"]
    if dev is not None:
        plots.confusion_matrix(plt, counts, output_dir / "confusion_matrix.png")
        n = min(32, len(dev_set))
        labels = dev_set.labels[:n]
        plots.predictions_grid(
            plt, dev_set.images[:n], predictions[:n], confidence[:n], labels, output_dir / "predictions.png"
        )
        written += [output_dir / "confusion_matrix.png", output_dir / "predictions.png"]
    return written


def _train_with_progress(network, optimizer, X, y, dev, schedule, seed, progress, save, quiet):
    """train(), with a progress bar on a terminal, log lines, and Ctrl-C turned into a checkpoint."""
    from tqdm import tqdm

    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    total = schedule.total_iterations(X.shape[1])
    done = 0 if progress is None else progress.iteration
    try:
        with tqdm(total=total, initial=done, disable=True if quiet else None, unit="it", leave=False) as bar:
            return train(
                network,
                optimizer,
                X,
                y,
                dev,
                schedule,
                seed,
                progress,
                on_log=lambda entry: _say(quiet, _log_line(entry), bar.write),
                on_step=bar.update,
                save=save,
                stop_requested=lambda: bool(interrupted),
            )
    finally:
        signal.signal(signal.SIGINT, previous)


def percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _log_line(entry: dict) -> str:
    return (
        f"iteration {entry['iteration']:>6}  train loss {entry['train_loss']:.4f}  "
        f"train acc {percent(entry['train_accuracy'])}  dev acc {percent(entry['dev_accuracy'])}"
    )


def _summary(metrics: dict, output_dir: Path, pictures: list[Path]) -> str:
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
    names = ", ".join(p.name for p in [output_dir / "model.npz", output_dir / "metrics.json", *pictures])
    lines.append(f"wrote to {output_dir}: {names}")
    return "\n".join(lines)


def train_main(argv: list[str] | None = None) -> int:
    """`python scripts/train.py [flags]`: train and write model.npz and metrics.json."""
    return run_main(train_command, argv)
