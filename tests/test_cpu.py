"""The CPU's way of running a batch: blocks in a fixed order on worker threads, and OpenBLAS's product layout."""

import time

import numpy as np
import pytest
from test_model import make_network, mean_loss

from nn_gpu import parallel
from nn_gpu.cpu import Blocks, product
from nn_gpu.device import Device, WholeBatches
from nn_gpu.model import Network


def test_gradients_by_block_equal_one_block_and_are_the_same_bits_for_any_thread_count(cpu):
    network, X, y = make_network(cpu, (6, 5), 40)
    whole_sums = network.gradients(X, y)  # 40 samples <= block_samples: one block
    whole = network.flat_grad.copy()
    by_threads = {}
    for block_samples in (7, 2):  # 6 blocks, the last of 5 samples; 20 blocks, more than PARTIAL_SUMS
        network.runner.block_samples = block_samples
        for threads in (1, 2, 3):
            network.runner.threads = threads
            sums = network.gradients(X, y)
            by_threads[block_samples, threads] = network.flat_grad.copy()
            np.testing.assert_allclose(network.flat_grad, whole, rtol=1e-12, atol=1e-15)
            assert sums == pytest.approx(whole_sums, rel=1e-12)
            assert sums == network.gradients(X, y) and np.array_equal(
                network.flat_grad, by_threads[block_samples, threads]
            )
    for (block_samples, threads), grad in by_threads.items():  # a fixed split and order: the same bits
        assert np.array_equal(grad, by_threads[block_samples, 1]), (block_samples, threads)
    assert not np.array_equal(by_threads[7, 1], by_threads[2, 1])  # else the comparison above shows nothing


def test_batches_come_back_in_sample_order_when_the_first_batch_finishes_last(cpu, monkeypatch):
    network, X, y = make_network(cpu, (6,), 40)
    network.runner.threads = 3
    expected = network.forward(X)
    inputs = network.inputs

    def first_batch_slow(X_batch):
        if np.array_equal(X_batch[:, 0], X[:, 0]):
            time.sleep(0.2)  # releases the GIL: the other threads finish their batches first
        return inputs(X_batch)

    monkeypatch.setattr(network, "inputs", first_batch_slow)
    np.testing.assert_allclose(network.predict_proba(X, batch_size=8), expected, rtol=1e-12)
    loss, accuracy = network.evaluate(X, y, batch_size=8)
    assert loss == pytest.approx(mean_loss(network, X, y), rel=1e-12)


def test_whole_batches_and_one_block_run_the_same_code_on_the_calling_thread(cpu, monkeypatch):
    # The GPU's runner (WholeBatches) and a CPU batch of one block both make one call on this thread.
    network, X, y = make_network(cpu, (6, 5), 40)
    whole = Network(network.arch, Device("cpu", np, cpu.ops, runner=WholeBatches), [p.copy() for p in network.params])

    def no_threads(task, n, threads):
        raise AssertionError("one block must run on the calling thread")

    monkeypatch.setattr(parallel, "run_tasks", no_threads)
    assert isinstance(network.runner, Blocks) and network.runner.block_samples >= 40
    assert whole.gradients(X, y) == network.gradients(X, y)
    assert np.array_equal(whole.flat_grad, network.flat_grad)


@pytest.mark.parametrize("layout", ["C", "F"])
def test_the_cpu_product_is_w_a_in_either_layout(layout):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((10, 784)).astype(np.float32)
    A = np.asarray(rng.random((784, 300), dtype=np.float32), order=layout)
    Z = product(W, A)
    assert Z.shape == (10, 300) and Z.flags.c_contiguous and Z.dtype == np.float32
    np.testing.assert_allclose(Z, W.astype(np.float64) @ A.astype(np.float64), rtol=1e-5, atol=1e-4)
