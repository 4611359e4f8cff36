"""The accuracy ladder (docs/ladder.md): the notebook's network, then one addition at a time.

Each rung is a train.py command. nn_gpu runs it through train.py's own code (nn_gpu.commands.train.train_main,
into a temporary folder), and PyTorch runs the same recipe written as a PyTorch user writes it
(nn.Linear, nn.ReLU, nn.Dropout, torch.optim, CrossEntropyLoss), on the same train/test split, the
same batches (epoch e's shuffle from (seed, e)) and the same distorted images (nn_gpu.augment, drawn
from (seed, iteration)); its own initialisation and dropout masks. Test accuracy is the last
weights' on the held-out set: Fashion-MNIST's t10k, the sample's 1,000 dev images (split by seed).
Seconds are training time alone, as train.py's metrics.json counts it.

    python scripts/ladder.py                      # the full ladder: Fashion-MNIST and the sample, 3 seeds
    python scripts/ladder.py --quick              # 2 epochs, 1 seed, the sample: a check that it runs
    python scripts/ladder.py --device gpu --data DIR --rungs 4,8 --seeds 1    # on a card, torch on cuda

On the GPU, nn_gpu distorts each batch on the card (the same xp code); PyTorch gets the same images
distorted on the host, as a PyTorch user with a NumPy augmentation would.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from nn_gpu import __version__, parallel
from nn_gpu.augment import AUGMENTATIONS, batch_rng, distort, distortion, kept_pixels, source_points
from nn_gpu.bench.implementations import torch_available
from nn_gpu.bench.timing import busy_core
from nn_gpu.commands import train as train_command
from nn_gpu.commands.toolkit import widths
from nn_gpu.device import resolve_device
from nn_gpu.dropout import layer_rates
from nn_gpu.optim import learning_rate
from nn_gpu.run import load_run_data
from nn_gpu.training import Batches

FASHION = "/usr/share/datasets/fashion-mnist"


def rungs(epochs: int) -> list[tuple[str, list[str], int | None]]:
    """(what the rung adds, its train.py flags, the rung it builds on), from the notebook's job up. Each
    adds one thing to the rung above (AdamW replaces SGD with momentum), except where it says which rung
    it builds on: width, which dropout needs (Srivastava et al. used 800 to 4096 units), added to the
    dropout rung; label smoothing, added to the best rung before dropout; then width, distortions,
    batch norm and weight averaging on the label-smoothing rung, and mirror images for clothes."""
    minibatch = ["--epochs", str(epochs), "--batch-size", "128"]
    sgd = ["--alpha", "0.05", "--momentum", "0.9"]
    wide = ["--hidden", "256,256"]
    adamw = ["--optimizer", "adamw", "--alpha", "0.001", "--weight-decay", "0.01", "--lr-schedule", "cosine"]
    dropout = ["--dropout", "0.2,0.5"]
    smooth = ["--label-smoothing", "0.1"]
    widest = [*minibatch, "--hidden", "1024,1024", *adamw, *smooth]
    return [
        ("the notebook: 784-10-10, U(-0.5, 0.5), 500 full-batch steps", ["--init", "uniform"], None),
        (f"He init, {epochs} epochs of mini-batches of 128, momentum 0.9", [*minibatch, *sgd], 0),
        ("two hidden layers of 256", [*minibatch, *sgd, *wide], 1),
        ("weight decay 5e-4, cosine schedule", [*minibatch, *sgd, *wide, "--weight-decay", "5e-4", "--lr-schedule", "cosine"], 2),
        ("AdamW (lr 0.001, decay 0.01) instead of SGD", [*minibatch, *wide, *adamw], 3),
        ("dropout 0.2 on pixels, 0.5 on hidden units", [*minibatch, *wide, *adamw, *dropout], 4),
        ("affine distortions", [*minibatch, *wide, *adamw, *dropout, "--augment", "affine"], 5),
        ("affine and elastic distortions", [*minibatch, *wide, *adamw, *dropout, "--augment", "affine+elastic"], 6),
        ("rung 5 with two hidden layers of 1024", [*minibatch, "--hidden", "1024,1024", *adamw, *dropout], 5),
        ("rung 4 with label smoothing 0.1", [*minibatch, *wide, *adamw, *smooth], 4),
        ("rung 9 with two hidden layers of 1024", widest, 9),
        ("rung 10 with affine distortions", [*widest, "--augment", "affine"], 10),
        ("rung 11 with batch norm", [*widest, "--augment", "affine", "--batch-norm"], 11),
        ("rung 11 with weight averaging (decay 0.999)", [*widest, "--augment", "affine", "--average-weights", "0.999"], 11),
        ("rung 9 with mirror images", [*minibatch, *wide, *adamw, *smooth, "--augment", "flip"], 9),
        ("rung 14 with two hidden layers of 512", [*minibatch, "--hidden", "512,512", *adamw, *smooth, "--augment", "flip"], 14),
        ("rung 15 with weight averaging (decay 0.999)", [*minibatch, "--hidden", "512,512", *adamw, *smooth, "--augment", "flip", "--average-weights", "0.999"], 15),
        ("rung 11 with gentle elastic distortions (alpha 20, sigma 5)", [*widest, "--augment", "affine+elastic=20+sigma=5"], 11),
    ]  # fmt: skip


def data_flags(source: str) -> list[str]:
    """The data flags of a rung's command: Fashion-MNIST trains on all 60,000 (tested on t10k)."""
    return ["--data", source, "--dev-size", "0"] if source != "sample" else []


def run_nn_gpu(flags: list[str], seed: int, device: str = "cpu") -> dict:
    """train.py with `flags`, --seed seed and --device device, into a temporary folder: test accuracy, seconds."""
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):
        code = train_command.train_main(
            [*flags, "--seed", str(seed), "--device", device, "--quiet", "--output-dir", folder]
        )
        if code:
            raise RuntimeError(f"train.py {' '.join(flags)} exited {code}")
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
    final = metrics["final"]
    accuracy = final["test_accuracy"] if "test_accuracy" in final else final["dev_accuracy"]
    return {"accuracy": accuracy, "seconds": metrics["train_seconds"]}


def run_torch(flags: list[str], seed: int, device: str = "cpu", graphed: bool = False) -> dict:
    """The same recipe in PyTorch (on cuda for device "gpu"), on the same split, batches and distorted images;
    graphed: each step captured in a CUDA graph (nn_gpu.bench.torch_step), as a speed-minded user would."""
    import torch

    from nn_gpu.bench import torch_step

    on = torch.device("cuda" if device == "gpu" else "cpu")
    config = train_command.run_config(train_command.train_parser().parse_args([*flags, "--seed", str(seed)]))
    data = load_run_data(config)
    test = data.dataset.test if data.dataset.test is not None else data.dev
    images, labels = np.array(data.train.rows), data.train.labels.astype(np.int64)
    m = len(labels)
    torch.manual_seed(seed)
    sizes = (784, *config.hidden, 10)
    rates = layer_rates(config.dropout, len(config.hidden))
    model = torch_step.mlp(torch, sizes, rates, config.batch_norm).to(on)
    if config.init == "uniform":  # the notebook's U(-0.5, 0.5), as its reader would write it
        for parameter in model.parameters():
            torch.nn.init.uniform_(parameter, -0.5, 0.5)
    if graphed and config.optimizer == "sgd" and config.lr_schedule != "constant":
        raise ValueError("PyTorch's SGD keeps its learning rate on the host: a schedule cannot move it in a CUDA graph")
    optimizer = torch_step.optimizer(
        torch, config.optimizer, model.parameters(), config.learning_rate, config.momentum, config.weight_decay, graphed
    )
    loss_function = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    step = torch_step.TorchStep(torch, model, loss_function, optimizer, graphed)
    average = torch_step.Average(torch, model, config.average_weights) if config.average_weights else None
    plan = config.plan()
    total = plan.total_iterations(m)
    recipe = distortion(config.augment) if config.augment else None
    X, y = (torch.from_numpy(images).to(on).float() / 255), torch.from_numpy(labels).to(on)
    model.train()
    if on.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    batches = Batches(m, plan, seed, np)
    for iteration in range(1, total + 1):
        rows = batches.rows(iteration)
        rows = np.arange(m) if rows is None else rows
        index = torch.from_numpy(rows).to(on)
        if recipe is None:
            X_batch = X[index]
        else:
            with parallel.one_blas_thread():  # as nn_gpu's loop runs it: no BLAS threads spinning against torch's
                X_batch = torch.from_numpy(distort(images[rows], recipe, batch_rng(seed, iteration))).to(on)
        torch_step.set_learning_rate(
            optimizer, config.learning_rate * learning_rate(config.lr_schedule, 1.0, iteration, total)
        )
        step(X_batch, y[index])
        if average is not None:
            average.update(model)
    if on.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    model = model if average is None else average.model
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(np.array(test.rows)).to(on).float() / 255).argmax(dim=1).cpu().numpy()
    return {"accuracy": float((predicted == test.labels).mean()), "seconds": seconds}


def augmentation_cost(device: str = "cpu", m: int = 60_000, batch: int = 128) -> list[dict]:
    """Seconds to distort one epoch of m images in batches of `batch`, for each of --augment's choices:
    nn_gpu's bilinear sampling (xp) beside scipy.ndimage.map_coordinates (order 1, one call per image, on
    the same source points) where scipy is installed; idle, then with another process busy on one core."""
    on = resolve_device(device)
    images = np.random.default_rng(0).integers(0, 256, (batch, 784), dtype=np.uint8)
    on_device = on.to_device(images)
    steps = -(-m // batch)
    try:
        from scipy import ndimage
    except ImportError:
        ndimage = None

    def scipy_distort(distortion, rng):
        source = source_points(distortion, batch, rng, np.float32)
        pixels = images.reshape(batch, 28, 28) / np.float32(255)
        coordinates = source.reshape(2, batch, 28, 28)
        out = [
            ndimage.map_coordinates(pixels[i], coordinates[:, i], order=1, mode="grid-constant") for i in range(batch)
        ]
        return np.stack(out).reshape(batch, -1) * kept_pixels(distortion.erase, batch, rng)

    def seconds_per_epoch(run, repeats: int = 20) -> float:
        rng = np.random.default_rng(0)
        run(rng)  # warm-up
        on.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            run(rng)
        on.synchronize()
        return (time.perf_counter() - started) / repeats * steps

    rows = []
    for name, recipe in AUGMENTATIONS.items():
        for load in ("idle", "one core busy"):
            with parallel.one_blas_thread(), busy_core() if load != "idle" else contextlib.nullcontext():
                row = {"augment": name, "device": on.name, "load": load}
                row["nn_gpu_seconds_per_epoch"] = seconds_per_epoch(lambda rng, d=recipe: distort(on_device, d, rng))
                if ndimage is not None and on.name == "cpu":
                    row["scipy_seconds_per_epoch"] = seconds_per_epoch(lambda rng, d=recipe: scipy_distort(d, rng))
            rows.append(row)
            scipy_cell = f"{row['scipy_seconds_per_epoch']:.2f}" if "scipy_seconds_per_epoch" in row else "-"
            print(f"| {name} | {on.name} | {load} | {row['nn_gpu_seconds_per_epoch']:.2f} | {scipy_cell} |", flush=True)
    return rows


def spread(values) -> str:
    """'90.12% ± 0.15 (89.98-90.30)': the mean, the standard deviation and the range, in percent."""
    values = 100 * np.asarray(values)
    return f"{values.mean():.2f}% ± {values.std():.2f} ({values.min():.2f}-{values.max():.2f})"


def ladder(sources, seeds, epochs: int, with_torch: bool, only=None, device: str = "cpu") -> list[dict]:
    """Every rung (or those numbered in `only`) on every source, nn_gpu and (where installed) PyTorch:
    one table row per rung, printed as made."""
    rows = []
    for source in sources:
        print(f"\n### {source}\n")
        graphed = with_torch and device == "gpu"
        print(
            "| rung | command | nn_gpu test accuracy | nn_gpu s/run | PyTorch test accuracy | PyTorch s/run |"
            + " PyTorch graphed test accuracy | PyTorch graphed s/run |" * graphed
        )
        print("| --- | --- | --- | --- | --- | --- |" + " --- | --- |" * graphed)
        for number, (what, flags, _) in enumerate(rungs(epochs)):
            if only is not None and number not in only:
                continue
            flags = [*data_flags(source), *flags]
            runs = {"nn_gpu": [run_nn_gpu(flags, seed, device) for seed in seeds]}
            if with_torch:
                runs["torch"] = [run_torch(flags, seed, device) for seed in seeds]
            if graphed:  # PyTorch with each step captured in a CUDA graph
                try:
                    runs["torch-graph"] = [run_torch(flags, seed, device, graphed=True) for seed in seeds]
                except ValueError as error:
                    print(f"rung {number}, PyTorch graphed: {error}")
            row = {
                "device": device,
                "data": source,
                "rung": number,
                "what": what,
                "command": " ".join(["python scripts/train.py", *flags]),
            }
            for impl, results in runs.items():
                row[impl] = {
                    "accuracies": [r["accuracy"] for r in results],
                    "seconds": [r["seconds"] for r in results],
                }
            rows.append(row)
            cells = [
                (spread(row[impl]["accuracies"]), f"{np.mean(row[impl]['seconds']):.1f}") if impl in row else ("-", "-")
                for impl in ("nn_gpu", "torch", *("torch-graph",) * graphed)
            ]
            print(
                f"| {number}. {what} | `{row['command']}` | " + " | ".join(f"{a} | {s}" for a, s in cells) + " |",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None, prog: str = "ladder.py") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="2 epochs, seed 0, the sample only: a check that every rung runs"
    )
    p.add_argument("--data", action="append", help=f"sources (default: {FASHION} and sample)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per rung (default 3)")
    p.add_argument("--epochs", type=int, default=20, help="epochs of the mini-batch rungs (default 20)")
    p.add_argument("--no-torch", action="store_true", help="nn_gpu alone")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="nn_gpu's device, and PyTorch's (cuda)")
    p.add_argument("--rungs", type=widths, help="only these rungs, e.g. 8 or 0,4 (default: all)")
    p.add_argument(
        "--augmentation-cost", action="store_true", help="only time --augment's distortions per epoch (and scipy's)"
    )
    p.add_argument("--json", type=Path, help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.quick:
        sources, seeds, epochs = args.data or ["sample"], [0], 2
    else:
        sources, seeds, epochs = args.data or [FASHION, "sample"], list(range(args.seeds)), args.epochs
    torch_version = __import__("torch").__version__ if torch_available(args.device) else "not available"
    print(f"nn_gpu {__version__}, PyTorch {torch_version}, {parallel.cores()} cores, {parallel.blas_summary()}")
    print(f"epochs {epochs}, seeds {seeds}")
    started = time.perf_counter()
    if args.augmentation_cost:
        print(f"\nSeconds to distort an epoch of 60,000 images in batches of 128 ({args.device})\n")
        print("| augment | device | load | nn_gpu (xp bilinear) | scipy.ndimage.map_coordinates |")
        print("| --- | --- | --- | --- | --- |")
        rows = augmentation_cost(args.device)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return 0
    with_torch = not args.no_torch and torch_available(args.device)
    only = None if args.rungs is None else set(args.rungs)
    rows = ladder(sources, seeds, epochs, with_torch, only, args.device)
    print(f"\nthe ladder took {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0
