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

ReLU, ReLU', softmax and the product W A come from the device's op table (nn_gpu.ops: plain NumPy,
or CUDA kernels in nn_gpu.kernels); the sums and updates are plain `xp`. Below the Network class,
each layer's forward step has its backward step beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nn_gpu.device import Device
from nn_gpu.ops import array_module

N_PIXELS = 784
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
    so an optimiser updates every parameter with one operation over the flat buffers. How a batch is
    run (whole on the GPU; in blocks on worker threads on the CPU, nn_gpu.cpu) is the device's
    `runner`, not this class's: the math here is the same on every device.
    """

    def __init__(self, arch: Architecture, device: Device, params):
        self.arch = arch
        self.device = device
        host = [np.asarray(p, dtype=arch.dtype) for p in params]
        self.flat = device.to_device(np.concatenate([p.ravel() for p in host]))
        self.flat_grad = device.xp.zeros_like(self.flat)
        self.params = self._views(self.flat, host)
        self.grads = self._views(self.flat_grad, host)
        self.runner = device.runner()  # on the CPU: its threads and block size (nn_gpu.cpu.Blocks)

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

        A0 = X when X is floating; when X holds uint8 pixels, A0 = X / 255 (see `scale_pixels`).
        """
        ops = self.device.ops
        A = [scale_pixels(X, self.arch.dtype)]
        for W, b in zip(self.W[:-1], self.b[:-1]):
            A.append(hidden_forward(ops, W, b, A[-1]))
        return output_forward(ops, self.W[-1], self.b[-1], A[-1]), A

    def gradients(self, X, y):
        """Forward and backward on one batch; fills `grads` and returns (loss_sum, correct_sum).

        X: 784 x m, y: m integer labels. grads: [dW1, db1, ..., dWL, dbL] of the mean loss, each the
        shape of its parameter. loss_sum and correct_sum are 0-d arrays (sums over the m samples),
        left on the device so that a training step never waits for the GPU.
        """
        loss_sum, correct_sum = self.runner.sum_gradients(self._sum_gradients, X, y, self.flat_grad)
        self.flat_grad /= X.shape[1]  # every dW and db at once: the mean over the batch
        return loss_sum, correct_sum

    def _sum_gradients(self, X, y, flat):
        """Write into `flat` (laid out as flat_grad) the gradients of the loss summed over X's columns;
        return (loss_sum, correct_sum). The forward pass, then each layer's backward from the top."""
        grads = self.grads if flat is self.flat_grad else self._views(flat, self.grads)
        Z, A = self.forward(X)
        dZ, loss, correct = self.device.ops.softmax_cross_entropy(Z, y)  # dZ_L = A_L - Y: 10 x m
        for l in range(len(A) - 1, -1, -1):  # A[l] is A_l, the input of layer l + 1
            dZ = layer_backward(self.device.ops, self.W[l], A[l], dZ, grads[2 * l], grads[2 * l + 1], l > 0)
        return loss.sum(), correct.sum()

    def evaluate(self, X, y, batch_size: int = 8192):
        """(mean loss, accuracy) over X (784 x m) and labels y, in batches; reads back to the host."""
        m = X.shape[1]

        def sums(start):
            Z, _ = self.forward(X[:, start : start + batch_size])
            _, loss, correct = self.device.ops.softmax_cross_entropy(Z, y[start : start + batch_size])
            return float(loss.sum()), float(correct.sum())  # host sync

        loss_sums, correct_sums = zip(*self.runner.map_batches(sums, m, batch_size))
        return sum(loss_sums) / m, sum(correct_sums) / m

    def predict_proba(self, X, batch_size: int = 8192):
        """Class probabilities A_L (10 x m) for X (784 x m), as a host array."""

        def probabilities(start):
            Z, _ = self.forward(X[:, start : start + batch_size])
            return self.device.to_host(self.device.ops.softmax(Z))

        return np.concatenate(self.runner.map_batches(probabilities, X.shape[1], batch_size), axis=1)


# Each layer's forward step, and under it its backward step (from the top, l = L..1).


def hidden_forward(ops, W, b, A_prev):
    """A_l = ReLU(Z_l), Z_l = W_l A_{l-1} + b_l: n_l x m, for W_l n_l x n_{l-1} and A_{l-1} n_{l-1} x m."""
    return ops.bias_relu(ops.product(W, A_prev), b)


def output_forward(ops, W, b, A_prev):
    """Z_L = W_L A_{L-1} + b_L: 10 x m, the logits; softmax and the loss follow in the backward step's
    ops.softmax_cross_entropy, which gives dZ_L = A_L - Y directly."""
    return ops.product(W, A_prev) + b


def layer_backward(ops, W, A_prev, dZ, dW, db, below: bool):
    """Layer l's backward step, from dZ_l (n_l x m) and its input A_{l-1} (n_{l-1} x m):

        dW_l = dZ_l A_{l-1}^T       (n_l x n_{l-1}, summed over samples: / m later)
        db_l = sum over samples of dZ_l     (n_l x 1, one per unit)
        dZ_{l-1} = W_l^T dZ_l * ReLU'(Z_{l-1})   (n_{l-1} x m), returned when a layer lies `below`

    dW and db are written in place; ReLU'(Z_{l-1}) = [A_{l-1} > 0], since A_{l-1} = ReLU(Z_{l-1}).
    """
    xp = array_module(dZ)
    xp.matmul(dZ, A_prev.T, out=dW)
    xp.sum(dZ, axis=1, keepdims=True, out=db)
    if below:
        return ops.relu_backward(W.T @ dZ, A_prev)
    return None


def scale_pixels(X, dtype: str):
    """A0 for X (784 x m): X itself when floating; for uint8 pixels, X / 255 in dtype.

    The new array keeps X's layout (a 784 x m view of an m x 784 array when X is one), and the
    division is the same on every device, so uint8 and pre-scaled inputs give the same bits.
    """
    if X.dtype != np.uint8:
        return X
    A0 = X.T.astype(dtype)  # m x 784 when X is the view of an m x 784 array
    A0 /= 255
    return A0.T
