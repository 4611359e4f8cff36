"""Timing: steps timed after a warm-up with the device synchronised, step memory, and a busy core."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from contextlib import contextmanager, nullcontext

from nn_gpu.bench.implementations import NNGpu, Torch

SETTLE_SECONDS = 1.0  # idle time before each implementation's turn


def time_steps(impl, steps, repeats, batches=None):
    """Median seconds per step over `repeats` timed blocks of `steps` steps, after one warm-up block; on
    `batches` (row index arrays, taken in turn) when given, except for implementations with steps(n),
    which draw batches of that size from their own epoch shuffles.

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
            if getattr(impl, "steps", None) is not None:  # nn_gpu's own: its batches, queued as train() queues them
                impl.steps(steps)
            else:
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
