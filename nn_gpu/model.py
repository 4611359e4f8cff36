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

from nn_gpu.device import Device

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
        """Logits Z_L (10 x m) and the activations [A0 = X, A1, ..., A_{L-1}] for X (784 x m)."""
        ops = self.device.ops
        A = [X]
        for W, b in zip(self.W[:-1], self.b[:-1]):
            A.append(ops.bias_relu(W @ A[-1], b))  # A_l = ReLU(W_l A_{l-1} + b_l): n_l x m
        Z = self.W[-1] @ A[-1] + self.b[-1]  # Z_L = W_L A_{L-1} + b_L: 10 x m
        return Z, A

    def gradients(self, X, y):
        """Forward and backward on one batch; fills `grads` and returns (loss_sum, correct_sum).

        X: 784 x m, y: m integer labels. grads: [dW1, db1, ..., dWL, dbL] of the mean loss, each the
        shape of its parameter. loss_sum and correct_sum are 0-d arrays (sums over the m samples),
        left on the device so that a training step never waits for the GPU.
        """
        m = X.shape[1]
        xp = self.device.xp
        Z, A = self.forward(X)
        dZ, loss, correct = self.device.ops.softmax_cross_entropy(Z, y)  # dZ_L = A_L - Y: 10 x m
        for l in range(len(A) - 1, -1, -1):  # A[l] is A_l, the input of layer l + 1
            W, dW, db = self.W[l], self.grads[2 * l], self.grads[2 * l + 1]
            xp.matmul(dZ, A[l].T, out=dW)  # dW_{l+1} = dZ_{l+1} A_l^T (/ m below): n_{l+1} x n_l
            xp.sum(dZ, axis=1, keepdims=True, out=db)  # db_{l+1}: n_{l+1} x 1, a sum per unit
            if l > 0:  # dZ_l = W_{l+1}^T dZ_{l+1} * ReLU'(Z_l): n_l x m
                dZ = self.device.ops.relu_backward(W.T @ dZ, A[l])
        self.flat_grad /= m  # every dW and db at once: the mean over the batch
        return loss.sum(), correct.sum()

    def evaluate(self, X, y, batch_size: int = 8192):
        """(mean loss, accuracy) over X (784 x m) and labels y, in batches; reads back to the host."""
        m = X.shape[1]
        loss_sum = correct_sum = 0.0
        for start in range(0, m, batch_size):
            Z, _ = self.forward(X[:, start : start + batch_size])
            _, loss, correct = self.device.ops.softmax_cross_entropy(Z, y[start : start + batch_size])
            loss_sum += float(loss.sum())  # host sync
            correct_sum += float(correct.sum())  # host sync
        return loss_sum / m, correct_sum / m

    def predict_proba(self, X, batch_size: int = 8192):
        """Class probabilities A_L (10 x m) for X (784 x m), as a host array."""
        columns = []
        for start in range(0, X.shape[1], batch_size):
            Z, _ = self.forward(X[:, start : start + batch_size])
            columns.append(self.device.to_host(self.device.ops.softmax(Z)))
        return np.concatenate(columns, axis=1)
