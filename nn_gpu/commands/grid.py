"""`nn-gpu train --seeds 0-7 --alpha 0.1,0.05 ...`: a grid of networks trained at once (nn_gpu.many).

Every network of the grid is trained on the first seed's dev split and batches; its initial weights
and dropout masks come from its own seed, drawn as a run with --seed N draws them. The run folder holds:

    networks/NN/         network NN's model.npz (as trained), best_model.npz (at its best dev
                         accuracy, with a dev set) and metrics.jsonl (one line per evaluation)
    results.csv          one row per network: its settings and its scores
    results.png          dev accuracy against each setting that varies, every seed a point
    best_model.npz       the best network's best model (the highest dev accuracy; the first of a tie)

A grid is not resumable: Ctrl-C, SIGTERM and SIGHUP stop it after the step running, and the networks
are written as they stand.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from nn_gpu import many, plots
from nn_gpu.checkpoint import save_model
from nn_gpu.errors import NNGpuError
from nn_gpu.model import Network
from nn_gpu.outputs import BEST_MODEL, check_room, claim, new_run_folder
from nn_gpu.run import Run, StopSignals, architecture, check_size, load_run_data, parameter_bytes
from nn_gpu.run_log import METRICS_LOG
from nn_gpu.safe_io import write_atomically, write_text_atomically
from nn_gpu.stacked import Setting
from nn_gpu.training import Interrupted

NETWORKS = "networks"
RESULTS = "results.csv"
RESULTS_PICTURE = "results.png"
ONE_NETWORK_ONLY = {  # flags a grid refuses, and why
    "resume": "a grid is not resumable",
    "batch_norm": "networks with batch norm cannot be stacked",
    "augment": "augmentation distorts each network's batches on the host, one network at a time",
    "average_weights": "a grid keeps each network's best weights, not their averages",
    "save_every": "a grid is not resumable, so it saves no checkpoints",
    "tensorboard": "each network's metrics.jsonl holds its evaluations",
    "dry_run": "train a few iterations with --iterations 3",
}


def train_grid(args: argparse.Namespace, grid: dict, device, prog: str) -> int:
    """Train the grid the flags ask for and write it into its run folder."""
    from nn_gpu.commands.train import run_config  # the flags' config: its module imports this one

    refused = [name for name in ONE_NETWORK_ONLY if getattr(args, name)]
    if refused:
        flag = "--" + refused[0].replace("_", "-")
        raise NNGpuError(f"{flag} trains one network: {ONE_NETWORK_ONLY[refused[0]]}; drop it, or train one network")
    config = run_config(args)
    data = load_run_data(config)  # a bad file is refused before any folder is made
    arch = architecture(config, data)
    check_size(arch, device)
    settings = many.grid(**grid)
    new = args.output_dir is None
    folder = claim(new_run_folder(), created=True) if new else claim(args.output_dir, overwrite=args.overwrite)
    with folder, StopSignals() as stop:
        run = Run.start(config, data, folder)
        check_room(folder.path, len(settings) * 2 * parameter_bytes(arch) + (4 << 20))
        networks = [Network(arch, device, run.initial_parameters(s.seed)) for s in settings]
        for network in networks:
            network.runner.threads = args.threads
        X, y = run.on_device(data.train, device)
        say = None if args.quiet else print
        if say:
            say(f"training {len(settings)} networks at once on {device.describe()}: {_varied(settings)}")
        results = many.train_groups(
            networks, settings, X, y, run.on_device(data.dev, device), config.plan(), config.optimizer,
            config.momentum, config.seed, log=say, should_stop=stop.received,
        )  # fmt: skip
        best = write_grid(run, results)
        table = folder.path / RESULTS
        print(f"best: network {best} ({_setting_words(settings[best])}); {_score_words(results[best])}; "
              f"every network in {table}")  # fmt: skip
        if stop.received():
            raise Interrupted(f"after iteration {results[0].history[-1]['iteration']}; the networks as they stood are "
                              f"in {folder.path}", stop.received())  # fmt: skip
    return 0


def write_grid(run: Run, results: list[many.Result]) -> int:
    """Write every network, the results table and picture, and the best model into the run's folder;
    the best network's index."""
    folder, encoding = run.path, run.data.encoding
    for k, result in enumerate(results):
        sub = folder / NETWORKS / f"{k:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        for name, network in (("model.npz", result.network), (BEST_MODEL, result.model)):
            if name == "model.npz" or result.best_iteration is not None:
                save_model(
                    sub / name, run.arch, [network.device.to_host(p) for p in network.arrays], run.trained_on, encoding
                )
        lines = "".join(json.dumps(entry) + "\n" for entry in result.history)
        write_text_atomically(sub / METRICS_LOG, lines)
    table = results_table(results)
    write_text_atomically(folder / RESULTS, table.to_csv(index=False))
    if plots.available():
        plots.save(plots.grid_results(table), folder / RESULTS_PICTURE)
    best = best_network(table)
    source = (
        folder / NETWORKS / f"{best:02d}" / (BEST_MODEL if results[best].best_iteration is not None else "model.npz")
    )
    write_atomically(folder / BEST_MODEL, lambda f: f.write(source.read_bytes()))
    return best


def results_table(results: list[many.Result]) -> pd.DataFrame:
    """One row per network: network, seed, learning_rate, weight_decay, dropout (rates joined by commas,
    or empty), label_smoothing, best_iteration, best_dev_accuracy, dev_accuracy, dev_loss, train_accuracy,
    train_loss (the last evaluation's), diverged, stopped_early."""
    rows = []
    for k, r in enumerate(results):
        s = r.setting
        rows.append({
            "network": k, **s._asdict(), "dropout": "" if s.dropout is None else _words(s.dropout),
            "best_iteration": r.best_iteration, "best_dev_accuracy": r.best_dev_accuracy, **r.final,
            "diverged": r.diverged, "stopped_early": r.stopped_early,
        })  # fmt: skip
    return pd.DataFrame(rows)


def best_network(table: pd.DataFrame) -> int:
    """The network with the highest best dev accuracy (without a dev set, the highest final train
    accuracy), diverged ones last; the first of a tie."""
    score = table["best_dev_accuracy"] if table["best_dev_accuracy"].notna().any() else table["train_accuracy"]
    score = score.where(~table["diverged"]).fillna(-np.inf).to_numpy()
    return int(np.argmax(score))


def _varied(settings: list[Setting]) -> str:
    """What differs between the networks, in words: 'seeds 0, 1, 2 x learning rates 0.1, 0.05'."""
    parts = []
    for name, words in zip(
        Setting._fields, ("seeds", "learning rates", "weight decays", "dropout rates", "label smoothings")
    ):
        values = list(dict.fromkeys(getattr(s, name) for s in settings))
        if len(values) > 1 or name == "seed":
            parts.append(f"{words} {', '.join(map(_words, values))}")
    return " x ".join(parts)


def _setting_words(s: Setting) -> str:
    return (
        f"seed {s.seed}, alpha {s.learning_rate:g}, weight decay {s.weight_decay:g}, dropout {_words(s.dropout)}, "
        f"label smoothing {s.label_smoothing:g}"
    )


def _words(value) -> str:
    """A setting's value as the table and the messages write it: 0.1; dropout rates 0,0.5; none."""
    if value is None:
        return "none"
    return ",".join(f"{p:g}" for p in value) if isinstance(value, tuple) else f"{value:g}"


def _score_words(result: many.Result) -> str:
    if result.best_dev_accuracy is not None:
        return f"dev accuracy {result.best_dev_accuracy:.2%} at iteration {result.best_iteration}"
    return f"train accuracy {result.final['train_accuracy']:.2%}"
