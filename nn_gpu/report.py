"""What a training run says and writes: the plan line before it starts, a line per evaluation and a
progress bar while it runs, and at the end model.npz, best_model.npz, metrics.json, the confusion
matrix, the pictures (nn_gpu.plots) and the summary. nn_gpu.run does the training; this only reports it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from nn_gpu import parallel, plots
from nn_gpu.augment import distortion as augment_recipe
from nn_gpu.checkpoint import save_model
from nn_gpu.device import Device
from nn_gpu.errors import NNGpuError, warn
from nn_gpu.model import Network
from nn_gpu.outputs import BEST_MODEL
from nn_gpu.run_log import MetricsLog
from nn_gpu.safe_io import write_text_atomically
from nn_gpu.training import Hooks, Progress, TrainingPlan

LOG_LEGEND = (
    "train loss and acc: the mean over the steps since the previous line, each before its update; "
    "dev: the weights at the line (with --average-weights, their moving average)"
)


def percent(value) -> str:
    """0.8512 as '85.12%'; None as '-'."""
    return "-" if value is None else f"{100 * value:.2f}%"


def log_line(entry: dict) -> str:
    """One history entry of nn_gpu.training.train as the line train.py prints: by epoch when training by epochs."""
    when = f"iteration {entry['iteration']:>6}"
    if "epoch" in entry:
        when = f"epoch {entry['epoch']:>4g}  ({when})"
    return (
        f"{when}  train loss {entry['train_loss']:.4f}  "
        f"train acc {percent(entry['train_accuracy'])}  dev acc {percent(entry['dev_accuracy'])}  "
        f"{entry['samples_per_second']:,.0f} samples/s"
    )


def device_line(device: Device, fallback: str | None, threads: int) -> str:
    """The first line of a run: the device, why not the GPU when auto fell back, and how the CPU path
    will use the cores (what a user checks when training is slower than expected)."""
    line = f"device: {device.describe()}" + (f"; no GPU: {fallback.split(': ')[0]}" if fallback else "")
    if device.name != "cpu":
        return line
    cores = parallel.cores()
    return (
        f"{line}; {threads} thread{'s' * (threads > 1)} ({cores} core{'s' * (cores > 1)} usable), "
        f"BLAS {parallel.blas_summary()} on one thread each"
    )


def data_line(data, arch) -> str:
    """What the run trains on (data: nn_gpu.run.RunData)."""
    dataset, train_set, dev_set, _, encoding = data
    if encoding.table:
        return (
            f"data: {dataset.source}: {len(train_set)} train, {len(dev_set)} dev rows; {arch.n_inputs} features "
            f"({encoding.scaling.kind} scaling), {arch.n_classes} classes in {encoding.label_column!r}"
        )
    test_size = 0 if dataset.test is None else len(dataset.test)
    return f"data: {dataset.source}: {len(train_set)} train, {len(dev_set)} dev, {test_size} test images"


def plan_line(plan: TrainingPlan, m: int, default_batch: bool, unit: str) -> str:
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
    extras += (
        [f"the weights' moving average (decay {plan.average_weights:g}) evaluated"] if plan.average_weights else []
    )
    return f"training: {what}, evaluated {when}{stopping}" + "".join(f"; {extra}" for extra in extras)


def warn_if_trivial(train_set) -> None:
    """Say loudly when the labels cannot be a real problem: the sign of a pixel column read as the labels."""
    if train_set.labels is not None and len(train_set) > 1 and len(np.unique(train_set.labels)) == 1:
        label = train_set.classes[train_set.labels[0]]
        column = "a pixel column" if train_set.encoding is None else "the right column (--label-column)"
        warn(f"{train_set.source}: every training label is {label}: the accuracy will mean nothing; is {column} "
             "being read as the label?")  # fmt: skip


def warn_if_too_good(train_set, final: dict) -> None:
    classes = 0 if train_set.labels is None else len(np.unique(train_set.labels))
    if final.get("dev_accuracy") == 1.0 and classes < 3:
        warn(f"dev accuracy 100.00% with only {classes} label value(s) in training: a trivial problem, not a result")


def bar_postfix(entry: dict, samples_per_second: float) -> str:
    """The progress bar's figures: the last logged train loss and accuracy, and the speed now."""
    figures = [] if not entry else [f"loss {entry['train_loss']:.4f}", f"acc {percent(entry['train_accuracy'])}"]
    return ", ".join([*figures, f"{samples_per_second:,.0f} samples/s"])


class Display:
    """A run as it goes: a progress bar on a terminal (the last loss and accuracy, samples/s), a log line
    per evaluation (none when quiet), and each evaluation streamed to `log` (metrics.jsonl). As a
    context: the bar, closed at the end; `hooks(stop)` are the training loop's hooks."""

    def __init__(self, total: int, done: int, quiet: bool, log: MetricsLog):
        from tqdm import tqdm

        self.quiet, self.log, self.last = quiet, log, {}
        self.bar = tqdm(total=total, initial=done, disable=True if quiet else None, unit="it", leave=False)

    def __enter__(self) -> Display:
        if not self.quiet:
            print(LOG_LEGEND)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def steps(self, count: int, samples: int) -> None:  # the rate in samples/s: a slowdown shows the moment it happens
        self.bar.update(count)
        if not self.bar.disable and (rate := self.bar.format_dict["rate"]):  # format_dict is rebuilt on each read
            self.bar.set_postfix_str(bar_postfix(self.last, samples / count * rate), refresh=False)

    def logged(self, entry: dict) -> None:
        self.last.update(entry)
        self.log.write(entry)
        if not self.quiet:
            self.bar.write(log_line(entry))

    def hooks(self, save, stop_requested) -> Hooks:
        return Hooks(on_log=self.logged, on_steps=self.steps, save=save, stop_requested=stop_requested)


def run_metrics(run, network: Network, result: Progress) -> dict:
    """metrics.json's contents (run: nn_gpu.run.Run, trained into `result`)."""
    device, (dataset, train_set, dev_set, _, encoding) = network.device, run.data
    return {
        "device": device.name,
        "device_index": device.index,
        "device_name": device.card_name,
        "device_description": device.describe(),
        "threads": network.runner.threads,
        "blas": parallel.blas_summary(),
        **run.config.to_dict(),
        "data": dataset.source,
        "inputs": run.arch.n_inputs,
        "classes": encoding.classes.tolist(),
        "iterations": result.iteration,
        "planned_iterations": run.config.plan().total_iterations(len(train_set)),
        "stopped_early": result.stopped_early,
        "train_size": len(train_set),
        "dev_size": len(dev_set),
        "test_size": 0 if dataset.test is None else len(dataset.test),
        "train_seconds": result.train_seconds,
        "samples_per_second": result.samples_per_second,
        "final": result.final,
        "best": {"iteration": result.best_iteration, "dev_accuracy": result.best_dev_accuracy},
        "history": result.history,
    }


def write_results(run, network: Network, result: Progress, metrics: dict, weights_layer: int, stop) -> list[Path]:
    """model.npz (the last parameters), best_model.npz (those at the best dev accuracy, when there is a
    dev set), each with what it was trained on and the data's Encoding, metrics.json, then the
    pictures; the paths written (metrics: run_metrics'). A write that fails ends in one line saying what was saved, and where
    (the models are rescued into the temporary folder when model.npz cannot be written in the run's
    folder); a signal (stop: nn_gpu.run.StopSignals) stops the pictures, never the models or the metrics."""
    arch, params = network.arch, [network.device.to_host(p) for p in network.arrays]
    models = {"model.npz": params}
    if result.best_params is not None:
        models[BEST_MODEL] = Network.views(network.device.to_host(result.best_params), params)
    saved_with = (run.trained_on, run.data.encoding)
    written = []
    try:
        for name, saved in models.items():
            save_model(run.path / name, arch, saved, *saved_with)
            written.append(run.path / name)
        write_text_atomically(run.path / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        written.append(run.path / "metrics.json")
        written += draw_run(run, network, metrics["history"], weights_layer, stop)
    except OSError as error:
        _rescue(f"{error.filename}: {error.strerror or error}", written, models, arch, saved_with)
    return written


def _rescue(failed: str, written: list[Path], models: dict, arch, saved_with) -> None:
    """Raise the one line of a failed write: what was saved, or where the models were saved instead."""
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
    best_too = f"the best weights were saved to {rescue / BEST_MODEL} and " if BEST_MODEL in models else ""
    raise NNGpuError(f"{failed}; {best_too}the trained model was saved to {rescue / 'model.npz'} instead") from None


def draw_run(run, network: Network, history: list[dict], layer: int, stop) -> list[Path]:
    """confusion_matrix.json, and the pictures of nn_gpu.plots when matplotlib is there; the paths written.
    A signal stops the drawing between two pictures (Interrupted)."""
    folder, dev_set, written = run.path, run.data.dev, []
    if len(dev_set):
        probabilities = network.predict_proba(run.on_device(dev_set, network.device)[0])  # C x m_dev
        predictions, confidence = probabilities.argmax(axis=0), probabilities.max(axis=0)
        counts = plots.confusion_counts(dev_set.labels, predictions, network.arch.n_classes)
        summary = json.dumps(plots.confusion_summary(counts, dev_set.classes), indent=2) + "\n"
        write_text_atomically(folder / "confusion_matrix.json", summary)
        written.append(folder / "confusion_matrix.json")
    if not plots.available():
        print(f"pictures skipped: matplotlib is not installed ({plots.PLOT_HINT})")
        return written
    W = [network.device.to_host(W) for W in network.W]
    pictures = network.arch.pictures and dev_set.encoding is None
    drawings = [("training_curves.png", lambda: plots.training_curves(history))]
    drawings += [("weights.png", lambda: plots.weights(W, layer))] if pictures else []
    if len(dev_set):
        n = min(32, len(dev_set))
        drawings.append(("confusion_matrix.png", lambda: plots.confusion_matrix(counts, dev_set.classes)))
        if pictures:
            drawings.append((
                "predictions.png",
                lambda: plots.predictions_grid(dev_set.rows[:n], predictions[:n], confidence[:n], dev_set.labels[:n]),
            ))  # fmt: skip
    if not pictures:
        print(f"weights.png and predictions.png skipped: the {network.arch.n_inputs} inputs are not 28 x 28 images")
    if run.config.augment:
        train_set, shown = run.data.train, plots.spread(run.data.train.labels, 8)
        distortion = augment_recipe(run.config.augment)
        drawings.append(("augmentations.png", lambda: plots.augmentations(
            train_set.rows[shown], train_set.labels[shown], distortion, run.config.seed)))  # fmt: skip
    for name, draw in drawings:
        stop.check(f"while drawing the pictures; the models and metrics.json are saved in {folder}")
        plots.save(draw(), folder / name)
        written.append(folder / name)
    return written


def summary(metrics: dict, folder: Path, written: list[Path], prog: str) -> str:
    """The lines a finished run ends with: how long, how good, what it wrote, how to predict with it."""
    final, best = metrics["final"], metrics["best"]
    averaged = bool(metrics.get("average_weights"))
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
            f"test accuracy {percent(final['test_accuracy'])} (the held-out t10k set, {'averaged' if averaged else 'last'} weights), "
            f"test loss {final['test_loss']:.4f}"
        )
    lines.append(f"wrote to {folder}: {', '.join(p.name for p in written)}")
    model = folder / "model.npz"
    if best["iteration"] is not None:
        lines.append(
            f"best dev accuracy {percent(best['dev_accuracy'])} at iteration {best['iteration']}: "
            f"{BEST_MODEL} holds those weights, model.npz the {'average at the end' if averaged else 'last'}"
        )
        model = folder / BEST_MODEL
    lines.append(f"predict with: {prog.replace('train', 'predict')} --model {model} --data FILE --out submission.csv")
    return "\n".join(lines)
