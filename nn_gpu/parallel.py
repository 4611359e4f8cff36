"""Running blocks of samples on every CPU core, one BLAS thread per core.

nn_gpu's CPU gradient (nn_gpu.model) splits a large batch into blocks of samples and runs them in
worker threads, one per core; NumPy releases the GIL inside its loops and matrix products. OpenBLAS
must then run each product on its calling thread, not split it across the cores again, and NumPy has
no switch for that: OpenBLAS's own C API does it (openblas_get/set_num_threads, found with ctypes
among the libraries this process has loaded, which Linux lists in /proc/self/maps). Where none is
found (another BLAS, or another system), `workers()` is 1 and BLAS threads each product itself.
"""

from __future__ import annotations

import ctypes
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np  # noqa: F401  (loads NumPy's BLAS before /proc/self/maps is read)

# (get, set) symbol pairs across OpenBLAS builds: plain, 64-bit-integer, and NumPy's wheels' scipy_openblas
_SYMBOLS = (
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
)


@functools.cache
def _openblas_thread_controls() -> tuple:
    """((get, set), ...) for each OpenBLAS loaded in this process; () where none can be found."""
    try:
        with open("/proc/self/maps") as maps:
            fields = (line.split(maxsplit=5) for line in maps)
            paths = sorted(
                {f[5].strip() for f in fields if len(f) == 6 and "openblas" in os.path.basename(f[5]).lower()}
            )
    except OSError:
        return ()
    controls = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            if hasattr(library, get_name) and hasattr(library, set_name):
                get, set_ = getattr(library, get_name), getattr(library, set_name)
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                controls.append((get, set_))
                break
    return tuple(controls)


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def workers() -> int:
    """Worker threads for the blocked CPU gradient: one per core where BLAS threads can be pinned, else 1."""
    return cores() if _openblas_thread_controls() else 1


@contextmanager
def one_blas_thread():
    """Within the block, every OpenBLAS product runs on its calling thread; the setting is restored after."""
    controls = _openblas_thread_controls()
    before = [get() for get, _ in controls]
    for _, set_ in controls:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), threads in zip(controls, before):
            set_(threads)


@functools.cache
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(n, thread_name_prefix="nn_gpu")


def run_on_cores(task, n: int) -> list:
    """[task(0), ..., task(n - 1)], run on n threads at once with one BLAS thread each.

    With n = 1 the task runs here, still with one BLAS thread: OpenBLAS's own threads, once woken,
    spin for a while after each product (a tenth of a second, measured: ten full-batch steps right
    after an evaluation took 28 ms instead of 15) and would take the cores from the next parallel run.
    """
    with one_blas_thread():
        if n == 1:
            return [task(0)]
        return list(_pool(n).map(task, range(n)))
