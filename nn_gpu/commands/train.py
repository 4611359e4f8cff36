"""`nn-gpu train` and scripts/train.py: the flags, and the main that turns them into a run.

The flags are a table (FLAGS; docs/cli.md is made from it). Those named like a field of
nn_gpu.config.RunConfig are the run's settings, checked there and stored in its checkpoint; the rest
only say how the run is shown or where it goes. nn_gpu.run trains; nn_gpu.report says what happened.
Every error a user can cause ends as one line on stderr and exit code 2; a diverged run ends with 3;
Ctrl-C, SIGTERM and SIGHUP save a checkpoint and exit with 128 + the signal's number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from nn_gpu import parallel
from nn_gpu.architecture import DTYPES, INITS
from nn_gpu.commands.grid import train_grid
from nn_gpu.commands.toolkit import (
    Parser,
    add_version,
    augment_recipe,
    device_name,
    dropout_rates,
    non_negative_int,
    number_in,
    numbers_in,
    positive_int,
    run_main,
    seed_list,
    widths,
)
from nn_gpu.config import (
    DEFAULT_ITERATIONS,
    EPOCH_BATCH_SIZE,
    LENGTH,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    SAMPLE,
    SCALES,
    RunConfig,
)
from nn_gpu.device import INSTALL_HINT, gpu_unavailable_reason, resolve_device
from nn_gpu.errors import NNGpuError
from nn_gpu.optim import OPTIMIZERS, SCHEDULES
from nn_gpu.outputs import CHECKPOINT, check_room, claim, new_run_folder
from nn_gpu.report import (
    Display,
    data_line,
    device_line,
    plan_line,
    run_metrics,
    summary,
    warn_if_too_good,
    warn_if_trivial,
    write_results,
)
from nn_gpu.run import Run, StopSignals, architecture, check_size, data_path, load_run_data, parameter_bytes
from nn_gpu.run_log import TENSORBOARD_DIR, TENSORBOARD_HINT, MetricsLog, tensorboard_writer_class
from nn_gpu.stacked import GRID_SETTINGS
from nn_gpu.training import Interrupted

DRY_RUN_ITERATIONS = 3
LENGTH_GROUP = "length"  # --iterations and --epochs: one or the other

FLAGS = [  # (flags, argparse keywords): the settings of the run, then how it is shown and where it goes
    (("--device",), dict(metavar="auto|cpu|gpu|gpu:N", type=device_name, default="auto", help="auto: card 0 if usable, else the CPU (default); "
        f"cpu; gpu (card 0) or gpu:N. The GPU needs CuPy: {INSTALL_HINT}")),
    (("--data",), dict(metavar="SOURCE", default=SAMPLE, help="a CSV (Kaggle's or label-first), an IDX file or folder, 'mnist', "
        "'fashion-mnist', or 'sample' (default: 5,000 built-in MNIST digits); or a CSV table with a header line, its "
        "labels in --label-column and numeric features in every other column")),
    (("--label-column",), dict(default="label", metavar="NAME", help="a CSV table's label column (default label); "
        "its labels may be any whole numbers or text")),
    (("--scale",), dict(choices=SCALES, help="how a CSV table's features are scaled, fitted on the training rows and "
        "stored in the model: standard (default: mean 0, standard deviation 1), minmax (to [0, 1]) or none. Digit "
        "images are always divided by 255")),
    (("--dev-size",), dict(metavar="N", type=non_negative_int, default=1000, help="images held out for the dev set after a "
        "seeded shuffle (default 1000)")),
    (("--seed",), dict(metavar="N", type=non_negative_int, default=0, help="same seed, same device: same result (default 0)")),
    (("--seeds",), dict(metavar="LIST", type=seed_list, help="train one network per seed at once, e.g. 0-7 or 0,3,5, "
        "and one per combination with the comma lists of --alpha, --weight-decay, --label-smoothing and the rate "
        "sets of --dropout: every network on the first seed's dev split and batches, each from its own initial "
        "weights and dropout masks; DIR/networks/ holds each, DIR/results.csv and results.png compare them")),
    (("--hidden",), dict(metavar="N[,N...]", type=widths, default=(10,), help="hidden layer widths, e.g. 10 or 256,128 (default 10)")),
    (("--alpha", "--lr"), dict(metavar="F[,F...]", dest="learning_rate", type=numbers_in(POSITIVE), default=0.10, help="the "
        "learning rate (default 0.10); --alpha is the notebook's name for it; a comma list trains a network for each "
        "(see --seeds)")),
    (("--iterations",), dict(metavar="N", group=LENGTH_GROUP, type=positive_int, help=f"gradient steps (default "
        f"{DEFAULT_ITERATIONS}, when --epochs is not given)")),
    (("--epochs",), dict(metavar="N", group=LENGTH_GROUP, type=positive_int, help="passes over the training set in shuffled "
        f"mini-batches (of {EPOCH_BATCH_SIZE} unless --batch-size says otherwise), instead of --iterations; "
        "evaluated once an epoch")),
    (("--init",), dict(choices=INITS, default="he", help="he (default) or uniform, the notebook's U(-0.5, 0.5)")),
    (("--dtype",), dict(choices=DTYPES, default="float32", help="float32 (default) or float64")),
    (("--batch-size",), dict(metavar="N", type=positive_int, help="mini-batch size (default: the full training set; "
        f"{EPOCH_BATCH_SIZE} with --epochs)")),
    (("--momentum",), dict(metavar="F", type=number_in(PROBABILITY), default=0.0, help="SGD momentum in [0, 1), "
        "v := momentum v + g (default 0)")),
    (("--weight-decay",), dict(metavar="F[,F...]", type=numbers_in(NON_NEGATIVE), default=0.0, help="L2 weight decay added "
        "to each gradient (default 0); a comma list trains a network for each")),
    (("--lr-schedule",), dict(choices=SCHEDULES, default="constant", help="constant (default), step or cosine")),
    (("--optimizer",), dict(choices=OPTIMIZERS, default="sgd", help="sgd (default, with --momentum), adam or adamw "
        "(betas 0.9, 0.999, eps 1e-8; --weight-decay is L2 for adam, decoupled for adamw; an --alpha near 0.001 "
        "suits both)")),
    (("--dropout",), dict(type=dropout_rates, nargs="+", metavar="RATES", help="inverted dropout in training steps: "
        "INPUT,HIDDEN rates, e.g. 0.2,0.5 drops 20%% of the pixels and half of each hidden layer's units; one rate "
        "per hidden layer may follow the input's (the last repeats); several sets, space-separated, train a network "
        "for each")),
    (("--label-smoothing",), dict(type=numbers_in(PROBABILITY), default=0.0, metavar="EPS[,EPS...]", help="train "
        "towards (1 - EPS) on the label and EPS / C on every one of the C classes (default 0: one-hot); a comma list "
        "trains a network for each")),
    (("--augment",), dict(type=augment_recipe, metavar="RECIPE", help="distort each training batch afresh: "
        "parts joined by +, each NAME or NAME=VALUE: rotation (degrees, default 10), scale (0.1), shift (pixels, 2), "
        "affine (all three), elastic (alpha, 34; Simard 2003), sigma (4), flip (mirror half the images), erase "
        "(the probability of erasing a rectangle, 0.5); e.g. affine, affine+elastic, shift+flip+erase")),
    (("--batch-norm",), dict(action="store_true", help="normalise each hidden layer over the batch before its "
        "scale, shift and ReLU (Ioffe and Szegedy 2015); evaluation and prediction use the running statistics")),
    (("--average-weights",), dict(type=number_in(PROBABILITY), default=0.0, metavar="DECAY", help="evaluate and "
        "save a moving average of the weights, average := DECAY average + (1 - DECAY) weights after each step "
        "(e.g. 0.999; default 0: off)")),
    (("--save-every",), dict(metavar="N", type=non_negative_int, default=0, help="save DIR/checkpoint.npz every N iterations too "
        "(default 0: only at the end and on a stop signal)")),
    (("--resume",), dict(type=Path, metavar="DIR", help="continue the run saved in DIR/checkpoint.npz; with "
        "--epochs N or --iterations N, extend it to N")),
    (("--log-interval",), dict(metavar="N", type=non_negative_int, help="evaluate every N iterations, 0 for only at the end "
        "(default 10; with --epochs, once an epoch)")),
    (("--early-stopping",), dict(type=non_negative_int, default=0, metavar="N", help="stop after N evaluations in "
        "a row without a better dev accuracy (default 0: off); best_model.npz holds the best either way")),
    (("--tensorboard",), dict(action="store_true", help=f"also write TensorBoard event files to "
        f"DIR/{TENSORBOARD_DIR} (needs tensorboardX: {TENSORBOARD_HINT})")),
    (("--weights-layer",), dict(type=positive_int, default=1, metavar="L", help="the layer weights.png draws "
        "(default 1; a deeper layer is drawn as the product of the weights below it, ReLU left out)")),
    (("--dry-run",), dict(action="store_true", help=f"train {DRY_RUN_ITERATIONS} iterations only, as a smoke test")),
    (("--threads",), dict(metavar="N", type=positive_int, help="CPU threads for batches of over 1,024 samples (default: the "
        "cores this process may use, said in the first line); BLAS runs on one thread per worker")),
    (("--no-graph",), dict(action="store_true", help="on the GPU, launch every kernel of every step from Python "
        "instead of replaying each step as a CUDA graph (the same numbers, slower): for debugging")),
    (("--quiet",), dict(action="store_true", help="print only the final summary")),
    (("--output-dir",), dict(metavar="DIR", type=Path, help="where best_model.npz, model.npz and the metrics go (default "
        "runs/<timestamp>)")),
    (("--overwrite",), dict(action="store_true", help="replace the run already in --output-dir (its model, "
        "metrics, pictures)")),
]  # fmt: skip
SETTINGS = tuple(field.name for field in dataclasses.fields(RunConfig))


def train_parser(prog: str = "train.py") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description="Train the notebook's digit network (784 -> hidden ReLU -> 10 softmax) with hand-written "
        "backpropagation, or one for any CSV table of features and labels. With no flags: the notebook's job, "
        "500 full-batch steps on the built-in sample.",
    )
    add_version(p)
    groups = {LENGTH_GROUP: p.add_mutually_exclusive_group()}
    for flags, keywords in FLAGS:
        keywords = dict(keywords)
        groups.get(keywords.pop("group", None), p).add_argument(*flags, **keywords)
    return p


def grid_values(args: argparse.Namespace) -> dict | None:
    """{setting: [values]} of a grid of networks (--seeds, or a list on one of GRID_SETTINGS), or None for one network."""
    values = {name: _listed(name, getattr(args, name)) for name in GRID_SETTINGS}
    if args.seeds is None and all(len(v) == 1 for v in values.values()):
        return None
    return {"seeds": list(args.seeds or (args.seed,)), **values}


def _listed(name: str, value) -> list:
    if name == "dropout":
        return [None] if value is None else list(value)
    return list(value) if isinstance(value, tuple) else [value]


def run_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig the flags ask for (ConfigError, one line, when settings disagree); of a grid, the
    config of its first network."""
    settings = {name: getattr(args, name) for name in SETTINGS}
    settings.update({name: _listed(name, settings[name])[0] for name in GRID_SETTINGS})
    if args.seeds:
        settings["seed"] = args.seeds[0]
    if args.dry_run:
        settings.update(iterations=DRY_RUN_ITERATIONS, epochs=None)
    return RunConfig(**{**settings, "data": data_path(args.data)})


def _refuse_new_settings(args: argparse.Namespace) -> dict:
    """The new length --resume was given ({"epochs": N}, {"iterations": N} or {}); NNGpuError for any
    other setting, which the run keeps as it was saved."""
    defaults = train_parser().parse_args([])
    typed = {keywords.get("dest", flags[0][2:].replace("-", "_")): flags[0] for flags, keywords in FLAGS}
    changed = [
        typed[name] for name in SETTINGS if name not in LENGTH and getattr(args, name) != getattr(defaults, name)
    ]
    changed += ["--output-dir"] * bool(args.output_dir) + ["--dry-run"] * args.dry_run
    if changed:
        raise NNGpuError(f"--resume continues a run with the settings saved in it; drop {', '.join(changed)}")
    return {name: getattr(args, name) for name in LENGTH if getattr(args, name) is not None}


def _check_weights_layer(layer: int, arch) -> None:
    if layer > arch.n_layers:
        raise NNGpuError(f"--weights-layer {layer}: the network has layers 1 to {arch.n_layers}")


def train_command(argv: list[str] | None = None, prog: str = "train.py") -> int:
    args = train_parser(prog).parse_args(argv)
    if args.resume and args.overwrite:
        raise NNGpuError("--overwrite replaces a run and --resume continues one: choose one")
    if args.tensorboard:
        tensorboard_writer_class()  # refused now, not after training, when tensorboardX is missing
    device = resolve_device(args.device)
    fallback = gpu_unavailable_reason() if args.device == "auto" and device.name == "cpu" else None
    args.threads = args.threads or parallel.cores()
    print(device_line(device, fallback, args.threads))
    grid = grid_values(args)
    if grid is not None:
        return train_grid(args, grid, device, prog)
    if args.resume:
        length = _refuse_new_settings(args)
        if not args.resume.is_dir():
            raise NNGpuError(f"--resume {args.resume}: no such folder")
        folder = claim(args.resume, resume=True)
    else:
        config = run_config(args)
        data = load_run_data(config)  # a bad file is refused before any folder is made
        arch = architecture(config, data)
        _check_weights_layer(args.weights_layer, arch)
        check_size(arch, device)
        new = args.output_dir is None
        folder = claim(new_run_folder(), created=True) if new else claim(args.output_dir, overwrite=args.overwrite)
    with folder:
        if args.resume:
            run = Run.resume(folder, length, f"--resume {args.resume}")
            _check_weights_layer(args.weights_layer, run.arch)
            if not args.quiet:
                print(f"resuming {folder.path / CHECKPOINT} after iteration {run.progress.iteration}")
        else:
            run = Run.start(config, data, folder)
        check_room(folder.path, 7 * parameter_bytes(run.arch) + (4 << 20))  # models, checkpoint and its copy, pictures
        with StopSignals() as stop:
            return _train(run, device, args, prog, stop)


def _train(run: Run, device, args: argparse.Namespace, prog: str, stop: StopSignals) -> int:
    """Train the run and write it into its folder."""
    train_set, plan = run.data.train, run.config.plan()
    if not args.quiet:
        print(data_line(run.data, run.arch))
    warn_if_trivial(train_set)
    network, optimizer = run.network(device, args.threads)
    if not args.quiet:
        default_batch = args.epochs is not None and args.batch_size is None
        print(plan_line(plan, len(train_set), default_batch, train_set.unit))
    save, progress = run.saver(network, optimizer, prog), run.progress
    history, done = ([], 0) if progress is None else (progress.history, progress.iteration)
    with MetricsLog(run.path, history, done, args.tensorboard) as log:
        with Display(plan.total_iterations(len(train_set)), done, args.quiet, log) as display:
            try:
                result = run.train(network, optimizer, display.hooks(save, stop.received), graphs=not args.no_graph)
            except Interrupted as stopped:
                raise Interrupted(f"{stopped.when}; resume with {prog} --resume {run.path}", stopped.signum) from None
    if stop.received():  # a signal during the final evaluation: the weights are trained, keep them resumable
        stop.check(f"after the last iteration, {result.iteration}; checkpoint saved to {save(result)}; "
                   f"finish with {prog} --resume {run.path}")  # fmt: skip
    metrics = run_metrics(run, network, result)
    written = write_results(run, network, result, metrics, args.weights_layer, stop)
    print(summary(metrics, run.path, written, prog))
    warn_if_too_good(train_set, result.final)
    return 0


def train_main(argv: list[str] | None = None, prog: str = "train.py") -> int:
    """`python scripts/train.py [flags]` (prog names the command typed, for usage lines and hints):
    train and write best_model.npz, model.npz and the metrics."""
    return run_main(lambda argv: train_command(argv, prog), argv)
