"""Threads for nn_gpu's CPU work: its own worker threads for blocks of samples, one BLAS thread each.

Two things decide the speed of a CPU step: where the matrix products run, and whether anything spins.

- BLAS is held to one thread (`one_blas_thread`) whenever nn_gpu computes. A BLAS library's own
  threads spin-wait for work between products; when another program holds a core (a browser, an IDE,
  a second training: every laptop has one) they wait for a core that does not come, and a mini-batch
  step slows by 2-50x (measured, docs/benchmarks.md; OpenBLAS's issues 731 and 5517). A product run
  on one thread also gives the same bits whatever the machine's core count: the result does not
  depend on how BLAS split it.
- A batch of more than one block of samples (nn_gpu.cpu) runs its blocks on `threads` worker
  threads of nn_gpu's own (NumPy releases the GIL inside its products and loops). A waiting worker
  sleeps, so it takes no core from anybody, and wakes at once when work comes. A smaller batch runs
  on the calling thread alone: for a mini-batch, handing work to threads costs more than it saves.

BLAS is controlled through threadpoolctl, which knows OpenBLAS (NumPy's wheels), MKL, BLIS and
FlexiBLAS. Where it finds none of them (Apple's Accelerate, which has no thread control it can use),
BLAS runs its products as it chooses, and `blas_summary()` says so.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np  # noqa: F401  (loads NumPy's BLAS, so that threadpoolctl finds it)
from threadpoolctl import ThreadpoolController

_held = threading.local()  # per thread: how many one_blas_thread blocks are open


@functools.cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries loaded in this process that threadpoolctl can control (NumPy's among them), as
    found at the first call: one loaded later (scipy's, say) is not held, and nn_gpu never calls it."""
    return ThreadpoolController().select(user_api="blas")


def blas_summary() -> str:
    """The BLAS libraries in use, as nn_gpu controls them, e.g. 'openblas 0.3.31 (pthreads)'."""
    libraries = []
    for info in _blas().info():
        version = f" {info['version']}" if info.get("version") else ""
        layer = f" ({info['threading_layer']})" if info.get("threading_layer") else ""
        libraries.append(f"{info['internal_api']}{version}{layer}")
    return ", ".join(libraries) or "a BLAS whose threads nn_gpu cannot control (not OpenBLAS, MKL, BLIS or FlexiBLAS)"


def cores() -> int:
    """CPU cores this process may run on: its affinity mask where the system has one (Linux), else every core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextmanager
def one_blas_thread():
    """Within the block, every BLAS product called from this thread runs on this thread alone.

    The first block on a thread sets the limit through threadpoolctl (about 16 us) and restores the
    libraries' own settings when it ends; blocks opened inside it cost nothing, so a training loop
    opens one around all its steps.
    """
    depth = getattr(_held, "depth", 0)
    _held.depth = depth + 1
    try:
        if depth:
            yield
        else:
            with _blas().limit(limits=1):
                yield
    finally:
        _held.depth = depth


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="nn_gpu")


def run_tasks(task, n: int, threads: int) -> list:
    """[task(0), ..., task(n - 1)], on min(threads, n) threads at once, each with one BLAS thread.

    Each thread takes the next task not yet taken, so a slow thread (one whose core another program
    holds) does fewer of them. The results come back in task order whatever thread ran each, so a
    caller that adds them up in that order gets the same bits for any `threads`.
    """
    threads = min(threads, n)
    with one_blas_thread():
        if threads <= 1:
            return [task(i) for i in range(n)]
        results = [None] * n
        todo = iter(range(n))
        taking = threading.Lock()

        def work(_) -> None:
            with one_blas_thread():  # per-thread libraries (OpenMP builds) need it set on each thread
                while True:
                    with taking:
                        i = next(todo, None)
                    if i is None:
                        return
                    results[i] = task(i)

        list(_pool(threads).map(work, range(threads)))
        return results
