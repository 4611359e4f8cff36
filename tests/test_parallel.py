"""Blocks on every core: OpenBLAS's thread count found, pinned to one and restored; tasks in order."""

import sys
import threading

import numpy as np
import pytest

from nn_gpu import parallel

NUMPY_BLAS = np.__config__.CONFIG["Build Dependencies"]["blas"]["name"]


@pytest.mark.skipif(
    sys.platform != "linux" or "openblas" not in NUMPY_BLAS, reason=f"NumPy's BLAS here is {NUMPY_BLAS}"
)
def test_numpy_openblas_threads_are_pinned_to_one_and_restored():
    controls = parallel._openblas_thread_controls()
    assert controls, "NumPy's OpenBLAS was not found among the loaded libraries"
    get, set_ = controls[0]
    before = get()
    set_(2)
    try:
        with parallel.one_blas_thread():
            assert [g() for g, _ in controls] == [1] * len(controls)
        assert get() == 2
        assert parallel.run_on_cores(lambda w: get(), 1) == [1]  # here too: no OpenBLAS thread is woken
        assert parallel.run_on_cores(lambda w: get(), 2) == [1, 1]
        assert get() == 2
    finally:
        set_(before)
    assert parallel.workers() == parallel.cores()


def test_run_on_cores_returns_each_task_in_order_from_its_own_thread():
    started = threading.Barrier(3, timeout=10)  # all three must be running at once to pass it

    def task(w):
        started.wait()
        return w, threading.get_ident()

    results = parallel.run_on_cores(task, 3)
    assert [w for w, _ in results] == [0, 1, 2]
    assert len({ident for _, ident in results}) == 3
    assert parallel.run_on_cores(lambda w: w * 10, 1) == [0]
