"""K networks of one architecture as one: their parameters stacked on a leading axis, so that a training
step's products are batched and X is read once for all of them (nn_gpu.many trains them).

Network k of a stack is the network nn_gpu.training would train alone with the same settings (its own
initial weights, learning rate, weight decay, dropout rates and stream, label smoothing and optimiser
moments) on the same batches. The equations are nn_gpu.model's, over the stacked axis (K networks;
on the CPU a shard of them, K', on each worker thread):

    W1  (K n1) x n0,  b1 (K n1) x 1           Z1 = W1 A0 + b1: one product for all K networks, A0 read
                                              once (with input dropout each network has its own A0:
                                              a batched product, K x n1 x m)
    W_l K x n_l x n_{l-1}, b_l K x n_l x 1    Z_l = W_l A_{l-1} + b_l (l >= 2): a batched product
    A_l = ReLU(Z_l) * M_l                     K x n_l x m, each network's own dropout mask M_l
    A_L = softmax(Z_L)                        K x C x m, over the classes (axis 1)
    dZ_L = A_L - (1 - eps_k) Y - eps_k / C    each network's label smoothing eps_k
    dW_l = dZ_l A_{l-1}^T,  db_l = sum over samples of dZ_l (K x n_l x 1)
    dZ_{l-1} = W_l^T dZ_l * s_k [A_{l-1} > 0]
    dW1 = dZ1 A0^T                            (K n1) x n0: one product again

then each network's update (nn_gpu.optim's SGD, Adam or AdamW, in the same order of operations) with
its own learning rate and weight decay, K-vectors broadcast over each parameter's K x size block.
All parameters live in one flat buffer, parameter by parameter: W1 of every network, then b1 of every
network, and so on, so that W1 is one (K n1) x n0 matrix and every W_l, b_l a view of it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nn_gpu import dropout, parallel
from nn_gpu.model import Network, scale_pixels
from nn_gpu.ops import array_module
from nn_gpu.optim import BETAS, EPS, OPTIMIZERS, adam_scalars, learning_rate


class Setting(NamedTuple):
    """What may differ between the networks of a stack: the seed of the initial weights and of the dropout
    masks, the learning rate, the weight decay (L2 for sgd and adam, decoupled for adamw), the dropout
    rates (input, hidden...; None for none) and the label smoothing eps."""

    seed: int = 0
    learning_rate: float = 0.10
    weight_decay: float = 0.0
    dropout: tuple[float, ...] | None = None
    label_smoothing: float = 0.0


GRID_SETTINGS = Setting._fields[1:]  # what a grid may list several values of, beside the seeds


class Stack:
    """`networks` (one architecture, on one device, without batch norm) stacked for training with
    `settings` (one Setting each), `optimizer` ("sgd" with `momentum`, "adam" or "adamw", betas and eps
    as nn_gpu.optim's), `lr_schedule` over `total` steps. The networks themselves are left untouched:
    network(k) gives network k as it is now. `done`: the steps taken; `sums`: K x 2 float64, each
    network's loss and correct-prediction sums over the samples since reset_sums (on the device)."""

    def __init__(
        self,
        networks: list[Network],
        settings: list[Setting],
        optimizer: str = "sgd",
        momentum: float = 0.0,
        lr_schedule: str = "constant",
        total: int = 1,
    ):
        arch, device = networks[0].arch, networks[0].device
        if any(net.arch != arch or net.device != device for net in networks) or len(settings) != len(networks):
            raise ValueError("a stack takes networks of one architecture on one device, and one setting each")
        if arch.batch_norm:
            raise ValueError("networks with batch norm cannot be stacked: each batch's statistics are its own")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        self.arch, self.device, self.settings = arch, device, list(settings)
        self.optimizer, self.momentum, self.lr_schedule, self.total = optimizer, momentum, lr_schedule, total
        self.K, xp, dtype = len(networks), device.xp, arch.dtype
        host = [[device.to_host(p) for p in net.params] for net in networks]
        self.flat = device.to_device(np.concatenate([np.stack(column).ravel() for column in zip(*host)]))
        self.grad = xp.zeros_like(self.flat)
        self.moments = [xp.zeros_like(self.flat) for _ in range(1 if optimizer == "sgd" else 2)]
        shapes = [(self.K, *p.shape) for p in host[0]]
        self.params, self.grads = _views(self.flat, shapes), _views(self.grad, shapes)
        self.W, self.b = self.params[0::2], self.params[1::2]
        self.dW, self.db = self.grads[0::2], self.grads[1::2]
        self.blocks = [_blocks(buffer, self.params) for buffer in (self.flat, self.grad, *self.moments)]
        # what each network keeps from step to step, on the device once: K x 1 x 1 columns over its arrays
        self.rates = np.array([dropout.layer_rates(s.dropout, arch.n_layers - 1) for s in settings])  # K x L
        scales = np.asarray(1, dtype) / (1 - self.rates).astype(dtype)  # K x L: M = D / (1 - p), as Dropout's
        self.scales = [self._column(scales[:, l]) for l in range(arch.n_layers)]  # s_l of each network
        eps = np.array([s.label_smoothing for s in settings])
        self.smoothing = self._column(eps / arch.n_classes), self._column(eps)  # eps / C and eps
        self.weight_decay = np.array([s.weight_decay for s in settings])
        self.decay = self._column(self.weight_decay)[:, :, 0] if self.weight_decay.any() else None  # K x 1, or none
        self.done = 0
        self.sums = xp.zeros((self.K, 2))
        self.threads = getattr(networks[0].runner, "threads", 1)

    def shards(self) -> list[slice]:
        """The networks each worker thread takes: on the CPU as many shards as threads, on the GPU one."""
        n = min(self.threads, self.K) if self.device.name == "cpu" else 1
        bounds = np.linspace(0, self.K, n + 1).round().astype(int)
        return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

    def _on_shards(self, task) -> list:
        """[task(ks) for each shard ks], on the worker threads (each with one BLAS thread) on the CPU, under
        the caller's NumPy error handling (np.errstate is each thread's own)."""
        shards, errors = self.shards(), np.geterr()

        def run(i: int):
            with np.errstate(**errors):
                return task(shards[i])

        return parallel.run_tasks(run, len(shards), len(shards))

    def inputs(self, X):
        """A0 for X (n0 x m on the device): uint8 pixels / 255 (as Network.inputs scales them), or X in dtype."""
        return scale_pixels(X, self.arch.dtype) if X.dtype == np.uint8 else X.astype(self.arch.dtype, copy=False)

    # a training step: forward, output layer, backward, then the update

    def sum_gradients(self, X, y) -> None:
        """grad := every network's gradient of its loss summed over X's m columns (X n0 x m, y m labels,
        both on the device), and sums += each network's loss and correct sums: step done + 1's work."""
        A0 = self.inputs(X)
        self._on_shards(lambda ks: self._sum_shard(ks, A0, y))

    def _sum_shard(self, ks: slice, A0, y) -> None:
        """The forward and backward pass of networks ks (K' of them) on A0 (n0 x m), y (m)."""
        xp, m, t = self.device.xp, A0.shape[1], self.done + 1
        masks = [self._mask(ks, l, n, m, t) for l, n in enumerate(self.arch.sizes[:-1])]
        A = self._activations(ks, A0, masks)
        Z = xp.matmul(self.W[-1][ks], A[-1])  # W_L A_{L-1}: K' x C x m
        dZ = self._output_layer(ks, Z, y)
        for l in range(len(A) - 1, -1, -1):  # A[l] = A_l (K' x n_l x m, or the shared A0: n0 x m), input of layer l + 1
            _weight_gradient(self.device, dZ, A[l], self.dW[l][ks])  # dW_{l+1} = dZ_{l+1} A_l^T
            if l == 0:
                break
            dA = xp.matmul(self.W[l][ks].transpose(0, 2, 1), dZ)  # W_{l+1}^T dZ_{l+1}: K' x n_l x m
            if masks[l] is not None:
                dA *= self.scales[l][ks]
            xp.multiply(dA, A[l] > 0, out=dA)  # dZ_l = dA * s_k * [A_l > 0]
            xp.sum(dA, axis=2, keepdims=True, out=self.db[l - 1][ks])  # db_l
            dZ = dA

    def _activations(self, ks: slice, A0, masks: list) -> list:
        """[A0, A1, ..., A_{L-1}] of networks ks: A0 shared (n0 x m), or each network's own under input
        dropout (K' x n0 x m); the hidden layers K' x n_l x m, each times its network's mask."""
        xp, n0 = self.device.xp, self.arch.n_inputs
        count = ks.stop - ks.start
        if masks[0] is None and self.device.name == "cpu":
            WA = np.stack([self.device.ops.product(W, A0) for W in self.W[0][ks]])
        elif masks[0] is None:  # Z1 = W1 A0 for all K' networks in one product: A0 read once
            WA = self.device.ops.product(self.W[0][ks].reshape(-1, n0), A0).reshape(count, -1, A0.shape[1])
        else:
            A0 = xp.multiply(A0, self.scales[0][ks])  # K' x n0 x m: A0 * M_0, as ops.dropout
            A0 *= masks[0]
            WA = xp.matmul(self.W[0][ks], A0)
        A = [A0]
        for l in range(1, self.arch.n_layers):
            xp.add(WA, self.b[l - 1][ks], out=WA)  # A_l = ReLU(W_l A_{l-1} + b_l) * M_l, as ops.bias_relu
            xp.maximum(WA, 0, out=WA)
            if masks[l] is not None:
                WA *= self.scales[l][ks]
                WA *= masks[l]
            A.append(WA)
            if l < self.arch.n_layers - 1:
                WA = xp.matmul(self.W[l][ks], WA)
        return A

    def _output_layer(self, ks: slice, Z, y):
        """dZ_L of networks ks from Z = W_L A_{L-1} (K' x C x m), in place, as ops.output_layer: the
        bias, softmax, cross-entropy against y, each network's label smoothing; db_L and the sums too."""
        xp = self.device.xp
        Z += self.b[-1][ks]
        loss, correct = cross_entropy(Z, y)
        Z -= self.smoothing[0][ks]  # dZ_L + eps Y - eps / C, as ops.smooth_labels
        Z[:, y, xp.arange(Z.shape[2])] += self.smoothing[1][ks][:, :, 0]
        xp.sum(Z, axis=2, keepdims=True, out=self.db[-1][ks])
        self.sums[ks, 0] += loss.sum(axis=1)
        self.sums[ks, 1] += correct.sum(axis=1)
        return Z

    def _column(self, values) -> object:
        """One value per network as a K x 1 x 1 array on the device, in the dtype."""
        return self.device.to_device(np.asarray(values, dtype=self.arch.dtype).reshape(-1, 1, 1))

    def _mask(self, ks: slice, l: int, n: int, m: int, t: int):
        """D_l of step t for networks ks (K' x n x m, True where kept), drawn as each network's own run
        draws it (nn_gpu.dropout: key (seed, l)); None when none of them drops anything in layer l."""
        rates = self.rates[ks, l]
        if not rates.any():
            return None
        seeds = [s.seed for s in self.settings[ks]]
        kept = [
            np.ones((n, m), dtype=bool)
            if p == 0
            else dropout.kept(dropout.key(seed, l), dropout.threshold(p), t, n, m, 0, m)
            for seed, p in zip(seeds, rates)
        ]
        return self.device.to_device(np.stack(kept))

    def update(self, count: int) -> None:
        """The update that ends step t = done + 1, from grad (summed over `count` samples; left as their
        mean), each network at its own learning rate of step t; then done := t."""
        t = self.done + 1
        lrs = [learning_rate(self.lr_schedule, s.learning_rate, t, self.total) for s in self.settings]
        if self.optimizer == "sgd":
            lr = self._column(lrs)[:, :, 0]
            for p, g, v in zip(*self.blocks):
                sgd_update(p, g, v, lr, self.decay, count, self.momentum)
        else:
            decoupled = self.optimizer == "adamw"
            scalars = [adam_scalars(t, lr, BETAS, wd, decoupled) for lr, wd in zip(lrs, self.weight_decay)]
            rows = [self._column(column)[:, :, 0] for column in np.array(scalars).T]
            l2 = None if decoupled else self.decay
            for p, g, m, v in zip(*self.blocks):
                adam_update(p, g, m, v, *rows, l2, count)
        self.done = t

    def finite(self) -> np.ndarray:
        """Whether each network's parameters are all finite: K booleans on the host (a host sync)."""
        xp = self.device.xp
        blocks = [xp.isfinite(block).all(axis=1) for block in self.blocks[0]]
        return self.device.to_host(xp.stack(blocks).all(axis=0))

    def reset_sums(self) -> None:
        self.sums.fill(0)

    # evaluation, and the networks themselves

    def evaluate(self, X, y, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(mean loss, accuracy) of every network over X (n0 x m) and y, two K-arrays on the host."""
        m, sums = X.shape[1], self.device.xp.zeros((self.K, 2))
        for start in range(0, m, batch_size):
            A0, labels = self.inputs(X[:, start : start + batch_size]), y[start : start + batch_size]

            def batch(ks, A0=A0, labels=labels):
                masks = [None] * self.arch.n_layers
                Z = self.device.xp.matmul(self.W[-1][ks], self._activations(ks, A0, masks)[-1]) + self.b[-1][ks]
                loss, correct = cross_entropy(Z, labels)
                sums[ks, 0] += loss.sum(axis=1)
                sums[ks, 1] += correct.sum(axis=1)

            self._on_shards(batch)
        loss, correct = self.device.to_host(sums).T  # host sync
        return loss / m, correct / m

    def state(self, k: int):
        """Network k's parameters as its own Network's flat buffer holds them (W1, b1, ..., on the device)."""
        return self.device.xp.concatenate([p[k].ravel() for p in self.params])

    def network(self, k: int, state=None) -> Network:
        """Network k as a Network of its own, with its parameters now (or `state`, a flat buffer as state(k) gives)."""
        flat = self.device.to_host(self.state(k) if state is None else state)
        shapes = [self.arch.shape(name) for name in self.arch.names]
        return Network(self.arch, self.device, [a.copy() for a in _views(flat, shapes)])


def cross_entropy(Z, y) -> tuple:
    """(loss, correct), each K' x m, for logits Z (K' x C x m) and labels y (m); Z := softmax(Z) -
    onehot(y) in place. ops.softmax_cross_entropy over the stacked axis, in the same order of operations."""
    xp = array_module(Z)
    columns = xp.arange(Z.shape[2])
    correct = (Z.argmax(axis=1) == y).astype(Z.dtype)  # K' x m
    zmax = Z.max(axis=1, keepdims=True)  # K' x 1 x m
    shifted_y = Z[:, y, columns] - zmax[:, 0]  # K' x m: Z[y] - max
    E = Z - zmax
    xp.exp(E, out=E)
    s = E.sum(axis=1, keepdims=True)
    loss = xp.log(s[:, 0]) - shifted_y
    xp.divide(E, s, out=Z)
    Z[:, y, columns] -= 1
    return loss, correct


def sgd_update(p, g, v, lr, wd, count: int, momentum: float) -> None:
    """ops.sgd_update for K networks at once: p, g, v K x n blocks; lr and wd (None: no decay) K x 1."""
    g /= count
    d = g + wd * p if wd is not None else g
    v *= momentum
    v += d
    p -= lr * v


def adam_update(p, g, m, v, step_size, root_correction2, shrink, l2, count: int) -> None:
    """ops.adam_update for K networks at once: p, g, m, v K x n blocks; the step's scalars and l2 (None:
    none) K x 1, in the same order of operations."""
    xp, T = array_module(p), p.dtype.type
    beta1, beta2, eps = map(T, (*BETAS, EPS))
    g /= count
    d = g + l2 * p if l2 is not None else g
    m *= beta1
    m += (T(1) - beta1) * d
    v *= beta2
    v += (T(1) - beta2) * d * d
    p *= shrink
    p -= step_size * m / (xp.sqrt(v) / root_correction2 + eps)


def _weight_gradient(device, dZ, A, dW) -> None:
    """dW := dZ A^T for networks K': the shared A0 (n0 x m) in one product, (K' n1) x n0; else batched."""
    if A.ndim == 2 and device.name == "cpu":
        for dZ_k, dW_k in zip(dZ, dW):
            device.ops.product(dZ_k, A.T, out=dW_k)
    elif A.ndim == 2:
        device.ops.product(dZ.reshape(-1, dZ.shape[2]), A.T, out=dW.reshape(-1, A.shape[0]))
    else:
        device.xp.matmul(dZ, A.transpose(0, 2, 1), out=dW)


def _views(flat, shapes) -> list:
    """Views of `flat` shaped as `shapes`, one after another."""
    views, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        views.append(flat[start : start + size].reshape(shape))
        start += size
    return views


def _blocks(buffer, params) -> list:
    """Each parameter's K x size block of `buffer` (laid out as the stack's flat buffer)."""
    starts = np.cumsum([0] + [p.size for p in params])
    return [buffer[a:b].reshape(p.shape[0], -1) for a, b, p in zip(starts[:-1], starts[1:], params)]
