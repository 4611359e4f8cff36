"""The network: the notebook's equations, written once against `xp`, for any number of layers.

A0 = X is n0 x m (784 pixels / 255, one column per sample). For layers l = 1..L:

    forward                                   backward (from the top, l = L..1)
    Z_l = W_l A_{l-1} + b_l                   dW_l = dZ_l A_{l-1}^T / m
                                              db_l = sum over samples of dZ_l / m    (n_l x 1)
    A_l = ReLU(Z_l)          (l < L)          dZ_{l-1} = W_l^T dZ_l * ReLU'(Z_{l-1})
    A_L = softmax(Z_L)                        dZ_L = A_L - Y                          (Y one-hot)
    loss = mean over samples of -log A_L[y]

    update (nn_gpu.optim): W_l := W_l - alpha dW_l,  b_l := b_l - alpha db_l, or with momentum

With one hidden layer of 10 units this is the notebook's network, in its names: W1 10 x 784,
b1 10 x 1, W2 10 x 10, b2 10 x 1, and Z1, A1, Z2, A2, dZ2, dW2, db2, dZ1, dW1, db1. Where the
notebook is wrong this is not: db sums over samples per unit (n_l x 1, not one scalar), softmax
subtracts each column's max, and the loss comes from log-softmax.

ReLU, ReLU' and softmax come from the device's op table (nn_gpu.ops: plain NumPy, or CUDA
kernels in nn_gpu.kernels); the matrix products, sums and updates are plain `xp`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nn_gpu import parallel
from nn_gpu.device import Device

N_PIXELS = 784
BLOCK_SAMPLES = 1024  # CPU gradient block: its A0 (3.2 MB float32) stays in cache from W1 A0 to dZ1 A0^T
PARTIAL_SUMS = 16  # CPU gradient: blocks are added into this many partial sums, whatever the thread count
N_CLASSES = 10
INITS = ("he", "uniform")


@dataclass(frozen=True)
class Architecture:
    """Layer sizes (n0 = 784, hidden..., 10) and the floating dtype of every parameter."""

    hidden: tuple[int, ...] = (10,)
    dtype: str = "float32"

    @property
    def sizes(self) -> tuple[int, ...]:
        return (N_PIXELS, *self.hidden, N_CLASSES)

    @property
    def n_parameters(self) -> int:
        """Every weight and bias: the sum over layers of n_l x (n_{l-1} + 1), the length of Network.flat."""
        return sum(n_out * (n_in + 1) for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]))


def init_parameters(arch: Architecture, init: str, rng: np.random.Generator):
    """Host arrays [W1, b1, W2, b2, ...]: W_l is n_l x n_{l-1}, b_l is n_l x 1.

    "uniform" is the notebook's: every W and b drawn from U(-0.5, 0.5).
    "he" draws W_l from N(0, 2 / n_{l-1}) (He et al. 2015, suited to ReLU) and sets b_l = 0.
    Drawn on the host in float64 and then cast, so a seed gives the same start on every device.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: choose one of {', '.join(INITS)}")
    params = []
    for n_in, n_out in zip(arch.sizes[:-1], arch.sizes[1:]):
        if init == "uniform":
            W = rng.random((n_out, n_in)) - 0.5
            b = rng.random((n_out, 1)) - 0.5
        else:
            W = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
            b = np.zeros((n_out, 1))
        params += [W.astype(arch.dtype), b.astype(arch.dtype)]
    return params


class Network:
    """A multilayer perceptron whose parameters live on `device`.

    All parameters share one flat buffer, `flat`; `params` = [W1, b1, ..., WL, bL] are views of it
    (shapes as in init_parameters). `gradients` fills `flat_grad`, and its views `grads`, in place,
    so an optimiser updates every parameter with one operation over the flat buffers.
    """

    def __init__(self, arch: Architecture, device: Device, params):
        self.arch = arch
        self.device = device
        host = [np.asarray(p, dtype=arch.dtype) for p in params]
        self.flat = device.to_device(np.concatenate([p.ravel() for p in host]))
        self.flat_grad = device.xp.zeros_like(self.flat)
        self.params = self._views(self.flat, host)
        self.grads = self._views(self.flat_grad, host)
        self.block_samples = BLOCK_SAMPLES
        self.threads = parallel.cores()  # CPU worker threads for a batch of several blocks

    @staticmethod
    def _views(flat, shapes_of):
        views, start = [], 0
        for p in shapes_of:
            views.append(flat[start : start + p.size].reshape(p.shape))
            start += p.size
        return views

    @property
    def W(self):
        return self.params[0::2]

    @property
    def b(self):
        return self.params[1::2]

    def forward(self, X):
        """Logits Z_L (10 x m) and the activations [A0, A1, ..., A_{L-1}] for X (784 x m).

        A0 = X when X is floating; when X holds uint8 pixels, A0 = X / 255 (see `inputs`).
        """
        ops = self.device.ops
        A = [inputs(X, self.arch.dtype)]
        for W, b in zip(self.W[:-1], self.b[:-1]):
            A.append(ops.bias_relu(_product(W, A[-1]), b))  # A_l = ReLU(W_l A_{l-1} + b_l): n_l x m
        Z = _product(self.W[-1], A[-1]) + self.b[-1]  # Z_L = W_L A_{L-1} + b_L: 10 x m
        return Z, A

    def gradients(self, X, y):
        """Forward and backward on one batch; fills `grads` and returns (loss_sum, correct_sum).

        X: 784 x m, y: m integer labels. grads: [dW1, db1, ..., dWL, dbL] of the mean loss, each the
        shape of its parameter. loss_sum and correct_sum are 0-d arrays (sums over the m samples),
        left on the device so that a training step never waits for the GPU.

        On the CPU a batch larger than `block_samples` is split into blocks of samples: every dW and
        db is a sum over samples, so the batch's is the sum of its blocks'. Each block's forward and
        backward run while its columns of X are still in cache, so X is read from memory once a step,
        not twice, and the blocks run on `threads` worker threads (nn_gpu.parallel). Block b is added
        into partial sum b mod PARTIAL_SUMS, in block order, and the partial sums are added in their
        order: the result is the same, bit for bit, whatever the number of threads. A batch of one
        block (a mini-batch) runs on this thread: on two cores, threads paid only from two blocks
        (2,048 samples) up, measured at hidden 10 and 128 (docs/benchmarks.md). Every product runs
        on one BLAS thread.
        """
        m = X.shape[1]
        with parallel.one_blas_thread():
            if self.device.name == "gpu" or m <= self.block_samples:
                loss_sum, correct_sum = self._sum_gradients(X, y, self.grads)
            else:
                starts = range(0, m, self.block_samples)
                sums = min(PARTIAL_SUMS, len(starts))
                results = parallel.run_tasks(
                    lambda k: self._sum_block_gradients(X, y, starts[k::sums]), sums, self.threads
                )
                np.sum([total for total, _, _ in results], axis=0, out=self.flat_grad)
                loss_sum, correct_sum = np.sum([r[1] for r in results]), np.sum([r[2] for r in results])
        self.flat_grad /= m  # every dW and db at once: the mean over the batch
        return loss_sum, correct_sum

    def _sum_gradients(self, X, y, grads):
        """Write into grads (a list like `grads`) the gradients of the summed loss over X's columns."""
        xp = self.device.xp
        Z, A = self.forward(X)
        dZ, loss, correct = self.device.ops.softmax_cross_entropy(Z, y)  # dZ_L = A_L - Y: 10 x m
        for l in range(len(A) - 1, -1, -1):  # A[l] is A_l, the input of layer l + 1
            W, dW, db = self.W[l], grads[2 * l], grads[2 * l + 1]
            xp.matmul(dZ, A[l].T, out=dW)  # dW_{l+1} = dZ_{l+1} A_l^T (/ m later): n_{l+1} x n_l
            xp.sum(dZ, axis=1, keepdims=True, out=db)  # db_{l+1}: n_{l+1} x 1, a sum per unit
            if l > 0:  # dZ_l = W_{l+1}^T dZ_{l+1} * ReLU'(Z_l): n_l x m
                dZ = self.device.ops.relu_backward(W.T @ dZ, A[l])
        return loss.sum(), correct.sum()

    def _sum_block_gradients(self, X, y, starts):
        """(flat gradient, loss, correct) summed over the blocks of block_samples columns at `starts`."""
        step = self.block_samples
        block_flat, total = np.zeros_like(self.flat_grad), np.zeros_like(self.flat_grad)
        block_grads = self._views(block_flat, self.grads)
        loss_sum = correct_sum = 0.0
        for start in starts:
            loss, correct = self._sum_gradients(X[:, start : start + step], y[start : start + step], block_grads)
            total += block_flat
            loss_sum, correct_sum = loss_sum + loss, correct_sum + correct
        return total, loss_sum, correct_sum

    def _map_batches(self, m, size, batch_task):
        """[batch_task(start) for start in range(0, m, size)], in that order; on the CPU the batches
        are shared among `threads` worker threads, one BLAS thread each; on the GPU, one at a time."""
        starts = range(0, m, size)
        threads = 1 if self.device.name == "gpu" else self.threads
        return parallel.run_tasks(lambda i: batch_task(starts[i]), len(starts), threads)

    def evaluate(self, X, y, batch_size: int = 8192):
        """(mean loss, accuracy) over X (784 x m) and labels y, in batches; reads back to the host."""
        m = X.shape[1]

        def sums(start):
            Z, _ = self.forward(X[:, start : start + batch_size])
            _, loss, correct = self.device.ops.softmax_cross_entropy(Z, y[start : start + batch_size])
            return float(loss.sum()), float(correct.sum())  # host sync

        loss_sums, correct_sums = zip(*self._map_batches(m, batch_size, sums))
        return sum(loss_sums) / m, sum(correct_sums) / m

    def predict_proba(self, X, batch_size: int = 8192):
        """Class probabilities A_L (10 x m) for X (784 x m), as a host array."""

        def probabilities(start):
            Z, _ = self.forward(X[:, start : start + batch_size])
            return self.device.to_host(self.device.ops.softmax(Z))

        return np.concatenate(self._map_batches(X.shape[1], batch_size, probabilities), axis=1)


def inputs(X, dtype: str):
    """A0 for X (784 x m): X itself when floating; for uint8 pixels, X / 255 in dtype.

    The new array keeps X's layout (a 784 x m view of an m x 784 array when X is one), and the
    division is the same on every device, so uint8 and pre-scaled inputs give the same bits.
    """
    if X.dtype != np.uint8:
        return X
    A0 = X.T.astype(dtype)  # m x 784 when X is the view of an m x 784 array
    A0 /= 255
    return A0.T


def _product(W, A):
    """W A (n_out x m, C-contiguous) for W n_out x n_in and A n_in x m.

    A0 = X is the transpose of the m x 784 images array; for it, OpenBLAS's thin products run about
    1.7x faster as (A^T W^T)^T than as W A, so that is how NumPy is asked (CuPy: W A as written).
    """
    if A.flags.c_contiguous or not isinstance(A, np.ndarray):
        return W @ A
    return (A.T @ W.T).T.copy()
