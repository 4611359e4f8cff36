"""Threads on the CPU: BLAS held to one thread (any library threadpoolctl knows) and restored; tasks in
order on worker threads; training gives the same bits whatever the thread count or BLAS's own setting."""

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_info, threadpool_limits

from nn_gpu import parallel
from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.data import load_dataset, rows_to_device
from nn_gpu.device import cpu_device
from nn_gpu.model import Network
from nn_gpu.optim import SGD
from nn_gpu.training import TrainingPlan, train

BLAS = [info for info in threadpool_info() if info["user_api"] == "blas"]
needs_blas = pytest.mark.skipif(not BLAS, reason="threadpoolctl finds no BLAS it can control in this NumPy")


def blas_threads() -> list[int]:
    """The thread count of each BLAS nn_gpu controls: those loaded when it first looked (NumPy's among
    them; a BLAS loaded later, such as scipy's by another test, is not nn_gpu's to hold)."""
    return [info["num_threads"] for info in parallel._blas().info()]


@needs_blas
def test_one_blas_thread_holds_every_blas_to_one_thread_on_every_worker_and_restores():
    n = len(blas_threads())
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == [2] * n
        with parallel.one_blas_thread():
            assert blas_threads() == [1] * n
            with parallel.one_blas_thread():  # nested: nothing to set, nothing to restore
                assert blas_threads() == [1] * n
            assert blas_threads() == [1] * n
        assert blas_threads() == [2] * n
        assert parallel.run_tasks(lambda i: blas_threads(), 3, threads=2) == [[1] * n] * 3
        assert parallel.run_tasks(lambda i: blas_threads(), 1, threads=2) == [[1] * n]  # this thread
        assert blas_threads() == [2] * n


def test_run_tasks_returns_each_task_in_order_from_threads_running_at_once():
    started = threading.Barrier(3, timeout=10)  # all three must be running at once to pass it

    def task(i):
        if i < 3:
            started.wait()
        return i, threading.get_ident()

    results = parallel.run_tasks(task, 7, threads=3)
    assert [i for i, _ in results] == list(range(7))
    assert len({ident for _, ident in results}) == 3
    here = threading.get_ident()
    assert parallel.run_tasks(lambda i: (i * 10, threading.get_ident()), 2, threads=1) == [(0, here), (10, here)]


def test_a_failing_task_raises_in_the_caller():
    def task(i):
        if i == 4:
            raise ValueError("task 4 failed")
        return i

    with pytest.raises(ValueError, match="task 4 failed"):
        parallel.run_tasks(task, 6, threads=2)


def test_blas_summary_names_the_library_or_says_it_cannot_control_it(monkeypatch):
    summary = parallel.blas_summary()
    for info in parallel._blas().info():  # every BLAS nn_gpu controls is named
        assert f"{info['internal_api']} {info['version']}" in summary
    monkeypatch.setattr(parallel, "_blas", lambda: ThreadpoolController().select(user_api="no such api"))
    assert parallel.blas_summary() == (
        "a BLAS whose threads nn_gpu cannot control (not OpenBLAS, MKL, BLIS or FlexiBLAS)"
    )
    with parallel.one_blas_thread():  # nothing to control: it still runs
        assert parallel.run_tasks(lambda i: i, 3, threads=2) == [0, 1, 2]


def mkl_library() -> Path | None:
    found = sorted(Path(sys.prefix, "lib").glob("libmkl_rt.so*"))
    return found[0] if found else None


@pytest.mark.slow
@pytest.mark.skipif(
    mkl_library() is None, reason="MKL is not installed in this environment (.ci/run installs it: pip install mkl)"
)
def test_mkl_is_held_to_one_thread_as_openblas_is():
    """Another BLAS than NumPy's own: MKL loaded into the process is controlled through the same code."""
    script = textwrap.dedent(f"""
        import ctypes, json
        ctypes.CDLL({str(mkl_library())!r}, mode=ctypes.RTLD_GLOBAL)
        from threadpoolctl import ThreadpoolController, threadpool_limits
        from nn_gpu import parallel
        def threads():
            return {{i["internal_api"]: i["num_threads"] for i in ThreadpoolController().select(user_api="blas").info()}}
        with threadpool_limits(limits=2, user_api="blas"):
            before = threads()
            with parallel.one_blas_thread():
                inside = threads()
                workers = parallel.run_tasks(lambda i: threads(), 2, threads=2)
            print(json.dumps([before, inside, workers, threads(), parallel.blas_summary()]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    before, inside, workers, after, summary = __import__("json").loads(result.stdout)
    assert before["mkl"] == 2 and inside["mkl"] == 1 and after == before
    assert inside == {api: 1 for api in before} and workers == [inside, inside]
    assert "mkl" in summary


def train_sample(threads: int, batch_size: int | None, blas_default: int) -> np.ndarray:
    """Parameters after training on the built-in sample (4,000 digits: 4 blocks for a full batch)."""
    dataset = load_dataset("sample")
    device = cpu_device()
    arch = Architecture((64,), "float32")
    network = Network(arch, device, init_parameters(arch, "he", np.random.default_rng(0)))
    network.runner.threads = threads
    X, y = rows_to_device(dataset.rows[:4000], device, "float32"), dataset.labels[:4000].astype(np.int32)
    plan = TrainingPlan(learning_rate=0.05, iterations=12, batch_size=batch_size, log_interval=0)
    with threadpool_limits(limits=blas_default, user_api="blas"):  # what the user's environment left BLAS at
        train(network, SGD(network, momentum=0.9), X, y, None, plan, seed=0)
    return network.flat.copy()


@pytest.mark.slow
@needs_blas
@pytest.mark.parametrize("batch_size", [None, 1000, 128], ids=["full-batch", "batch-1000", "batch-128"])
def test_the_same_seed_gives_the_same_bits_whatever_the_thread_count(batch_size):
    reference = train_sample(1, batch_size, blas_default=1)
    for threads, blas_default in [(2, 2), (3, 1), (1, 2)]:
        assert np.array_equal(train_sample(threads, batch_size, blas_default), reference), (threads, blas_default)
