"""How the CPU runs the network's math: blocks of samples in cache, on worker threads, in a fixed order.

nn_gpu.model writes the equations once; the device decides how a batch is run (Device.runner). On the
GPU a batch runs whole (nn_gpu.device.WholeBatches): its own thousands of threads share the work. On
the CPU, `Blocks` does what pays on a few cores:

- A batch of more than `block_samples` samples is cut into blocks. Every dW and db is a sum over
  samples, so the batch's is the sum of its blocks'. Each block's forward and backward run while its
  columns of X are still in cache, so X is read from memory once a step, not twice.
- The blocks run on `threads` worker threads (nn_gpu.parallel), each product on one BLAS thread.
  Block b is added into partial sum b mod PARTIAL_SUMS, in block order, and the partial sums are
  added in their order: the result is the same, bit for bit, whatever the number of threads.
- A batch of one block (a mini-batch) runs on the calling thread: on two cores, threads paid only
  from two blocks (2,048 samples) up, measured at hidden 10 and 128 (docs/benchmarks.md).

`product` is the CPU's W A: the same numbers as W @ A, in the layout OpenBLAS runs fastest.
"""

from __future__ import annotations

import numpy as np

from nn_gpu import parallel
from nn_gpu.ops import REFERENCE_OPS

BLOCK_SAMPLES = 1024  # a block's A0 (3.2 MB float32) stays in cache from W1 A0 to dZ1 A0^T
PARTIAL_SUMS = 16  # blocks are added into this many partial sums, whatever the thread count


def product(W, A, out=None):
    """W A (n_out x m, C-contiguous; into out when given) for W n_out x n_in and A n_in x m.

    A0 = X is the transpose of the m x 784 images array; for it, OpenBLAS's thin products run about
    1.7x faster as (A^T W^T)^T than as W A, so that is how NumPy is asked for a new array.
    """
    if out is not None or A.flags.c_contiguous:
        return np.matmul(W, A, out=out)
    return (A.T @ W.T).T.copy()


CPU_OPS = REFERENCE_OPS._replace(product=product)  # the op table of the CPU device


class Blocks:
    """Runs batches on the CPU: blocks of `block_samples` samples on `threads` worker threads."""

    def __init__(self, threads: int | None = None, block_samples: int = BLOCK_SAMPLES):
        self.threads = parallel.cores() if threads is None else threads
        self.block_samples = block_samples

    def sum_gradients(self, sum_batch, X, y, flat_grad, sums):
        """Fill flat_grad with the gradients of the summed loss over X's m columns; add the loss and
        correct-prediction sums to sums (2, float64).

        sum_batch(X, y, flat, sums, first) writes the summed gradients of the batch (X, y), whose first
        column is column `first` of the whole batch, into `flat`, a buffer laid out as flat_grad, and
        adds its loss and correct sums to `sums`.
        """
        m = X.shape[1]
        with parallel.one_blas_thread():
            if m <= self.block_samples:
                return sum_batch(X, y, flat_grad, sums, 0)
            starts = range(0, m, self.block_samples)
            partials = min(PARTIAL_SUMS, len(starts))

            def partial_sum(k):  # blocks k, k + partials, k + 2 partials, ... in order
                block_flat, total = np.zeros_like(flat_grad), np.zeros_like(flat_grad)
                block_sums = np.zeros_like(sums)
                for start in starts[k::partials]:
                    block = slice(start, start + self.block_samples)
                    sum_batch(X[:, block], y[block], block_flat, block_sums, start)
                    total += block_flat
                return total, block_sums

            totals, block_sums = zip(*parallel.run_tasks(partial_sum, partials, self.threads))
            np.sum(totals, axis=0, out=flat_grad)
            sums += np.sum(block_sums, axis=0)

    def whole(self, task):
        """task(), on the calling thread with BLAS on one thread: a batch run whole, as one block is."""
        with parallel.one_blas_thread():
            return task()

    def map_batches(self, task, m: int, size: int) -> list:
        """[task(start) for start in range(0, m, size)], in that order, shared among the worker threads."""
        starts = range(0, m, size)
        return parallel.run_tasks(lambda i: task(starts[i]), len(starts), self.threads)
