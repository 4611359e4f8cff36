"""The speed workloads: rows of measurements, one per implementation, with their ratios."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from nn_gpu import parallel
from nn_gpu.bench.implementations import NNGpu, Torch, implementations, synthetic_digits
from nn_gpu.bench.timing import step_peak_bytes, time_steps
from nn_gpu.cpu import BLOCK_SAMPLES
from nn_gpu.data import load_dataset, split_dev


def run_training(devices, m, hidden, batch_size, steps, repeats, label, only_nn_gpu=False):
    images, labels = synthetic_digits(m)
    batches = None
    if batch_size:
        order = np.random.default_rng(1).permutation(m)
        batches = [order[s : s + batch_size] for s in range(0, m - batch_size + 1, batch_size)]
    rows = []
    for impl in implementations(devices, images, labels, hidden, only_nn_gpu, batch_size):
        if batches is not None and isinstance(impl, (NNGpu, Torch)) and "-gpu" in impl.name:
            device_batches = [
                impl.device.xp.asarray(b) if isinstance(impl, NNGpu) else impl.torch.as_tensor(b, device=impl.device)
                for b in batches
            ]
        else:
            device_batches = batches
        seconds = time_steps(impl, steps, repeats, device_batches)
        samples = batch_size or m
        rows.append(
            {
                "workload": label,
                "impl": impl.name,
                "m": m,
                "hidden": list(hidden),
                "batch": batch_size or m,
                "ms_per_step": 1000 * seconds,
                "samples_per_second": samples / seconds,
                "step_peak_mb": None if (p := step_peak_bytes(impl, device_batches)) is None else p / 1e6,
            }
        )
    add_ratios(rows)
    return rows


def add_ratios(rows):
    """speedup_vs_notebook, speedup_vs_torch and speedup_vs_torch_graph (PyTorch eager and graphed, on
    the same device) for each row."""
    by_name = {r["impl"]: r["ms_per_step"] for r in rows}
    for r in rows:
        device = "gpu" if "-gpu" in r["impl"] else "cpu"
        r["speedup_vs_notebook"] = by_name["notebook"] / r["ms_per_step"] if "notebook" in by_name else None
        torch_ms, graphed_ms = by_name.get(f"torch-{device}"), by_name.get(f"torch-{device}-graph")
        r["speedup_vs_torch"] = torch_ms / r["ms_per_step"] if torch_ms else None
        r["speedup_vs_torch_graph"] = graphed_ms / r["ms_per_step"] if graphed_ms else None


UNDER_LOAD = "under load: "


def add_speed_under_load(rows) -> None:
    """idle_ms_per_step and speed_vs_idle (idle ms/step over its own) for each row measured under load,
    from its implementation's idle row of the same workload."""
    idle = {(r["workload"], r["impl"], tuple(r["hidden"]), r["batch"]): r["ms_per_step"] for r in rows if "batch" in r}
    for r in rows:
        if r["workload"].startswith(UNDER_LOAD):
            key = (r["workload"].removeprefix(UNDER_LOAD), r["impl"], tuple(r["hidden"]), r["batch"])
            r["idle_ms_per_step"] = idle.get(key)
            r["speed_vs_idle"] = idle[key] / r["ms_per_step"] if key in idle else None


def products_floor(m=41000, hidden=10, repeats=7) -> dict:
    """ms per step for the two products with X alone, Z1^T = A0^T W1^T and dW1 = dZ1 A0^T, run the way
    nn_gpu's CPU gradient runs them (blocks of samples on every core) but on a block already in cache.

    A NumPy implementation of a step that multiplies by X twice cannot be faster than this here.
    """
    rng = np.random.default_rng(0)
    workers = parallel.cores()
    blocks = -(-m // BLOCK_SAMPLES)
    A0T = [rng.random((BLOCK_SAMPLES, 784), dtype=np.float32) for _ in range(workers)]  # one per worker, reused
    W1 = rng.random((hidden, 784), dtype=np.float32)
    dZ1 = rng.random((hidden, BLOCK_SAMPLES), dtype=np.float32)

    def worker(w):
        for _ in range(w, blocks, workers):
            A0T[w] @ W1.T
            dZ1 @ A0T[w]

    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        parallel.run_tasks(worker, workers, workers)
        times.append(time.perf_counter() - started)
    gflop = 2 * 2 * hidden * 784 * m / 1e9
    seconds = statistics.median(times[1:])
    return {
        "workload": "products floor",
        "m": m,
        "hidden": [hidden],
        "workers": workers,
        "ms_per_step": 1000 * seconds,
        "gflop_per_second": gflop / seconds,
    }


def bench_csv_load(rows=42000):
    """Seconds to load a Kaggle-format train.csv of `rows` rows (MNIST-like sparsity)."""
    images, labels = synthetic_digits(rows, seed=2)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.csv"
        header = "label," + ",".join(f"pixel{i}" for i in range(784))
        np.savetxt(path, np.column_stack([labels, images]), fmt="%d", delimiter=",", header=header, comments="")
        size_mb = path.stat().st_size / 1e6
        times = []
        for _ in range(3):
            started = time.perf_counter()
            dataset = load_dataset(path)
            times.append(time.perf_counter() - started)
    assert dataset.rows.shape == (rows, 784)
    return {"workload": "load train.csv", "rows": rows, "file_mb": size_mb, "seconds": statistics.median(times)}


def time_to_accuracy(devices, target=0.85, check_every=10, limit=3000) -> list[dict]:
    """Training seconds and iterations until dev accuracy >= target, on the built-in sample.

    The notebook's job: 784-10-10, full batch, alpha 0.1; 4,000 train and 1,000 dev digits. The
    notebook starts from its U(-0.5, 0.5) weights, nn_gpu from He's, PyTorch from nn.Linear's. Dev
    accuracy is checked every `check_every` iterations, off the clock.
    """
    train_set, dev_set = split_dev(load_dataset("sample"), 1000, np.random.default_rng(0))
    rows = []
    for impl in implementations(devices, train_set.rows, train_set.labels, (10,)):
        seconds, iteration, accuracy = 0.0, 0, 0.0
        while accuracy < target and iteration < limit:
            impl.synchronize()
            started = time.perf_counter()
            for _ in range(check_every):
                impl.step()
            impl.synchronize()
            seconds += time.perf_counter() - started
            iteration += check_every
            accuracy = impl.accuracy(dev_set.rows, dev_set.labels)
        reached = accuracy >= target
        rows.append(
            {
                "workload": f"time to {100 * target:.0f}% dev",
                "impl": impl.name,
                "iterations": iteration if reached else None,
                "seconds": seconds if reached else None,
                "dev_accuracy": accuracy,
            }
        )
    return rows
