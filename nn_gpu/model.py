"""The network: the notebook's equations, written once against `xp`, for any number of layers.

A0 = X is n0 x m (one column per sample: 784 pixels / 255 for digits, or any n0 features), and the
output layer has one unit per class, C of them (10 for digits). For layers l = 1..L:

    forward                                   backward (from the top, l = L..1)
    Z_l = W_l A_{l-1} + b_l                   dW_l = dZ_l A_{l-1}^T / m
                                              db_l = sum over samples of dZ_l / m    (n_l x 1)
    A_l = ReLU(Z_l)          (l < L)          dZ_{l-1} = W_l^T dZ_l * ReLU'(Z_{l-1})
    A_L = softmax(Z_L)                        dZ_L = A_L - Y                          (Y one-hot)
    loss = mean over samples of -log A_L[y]

    update (nn_gpu.optim): W_l := W_l - alpha dW_l,  b_l := b_l - alpha db_l, or with momentum, or Adam

With label smoothing eps (a training step's option), the target is (1 - eps) Y + eps / C instead of
Y, so dZ_L = A_L - (1 - eps) Y - eps / C; the loss reported stays the plain cross-entropy. With
dropout (nn_gpu.dropout), a training step multiplies each layer input A_l (l < L) by its mask
M_l = D_l / (1 - p_l) as it is made, and the backward step takes dZ_l = dA_l * s_l * [A_l > 0] with
s_l = 1 / (1 - p_l): A_l, kept after its mask, is 0 wherever a unit was dropped.

With one hidden layer of 10 units this is the notebook's network, in its names: W1 10 x 784,
b1 10 x 1, W2 10 x 10, b2 10 x 1, and Z1, A1, Z2, A2, dZ2, dW2, db2, dZ1, dW1, db1. Where the
notebook is wrong this is not: db sums over samples per unit (n_l x 1, not one scalar), softmax
subtracts each column's max, and the loss comes from log-softmax.

The products, ReLU with its bias, ReLU' with db, and the output layer (its bias, softmax, the
cross-entropy and db_L) come from the device's op table (nn_gpu.ops: plain NumPy, or CUDA kernels
in nn_gpu.kernels), so a training step is nothing but op calls, one kernel each on the GPU. Below the
Network class, each layer's forward step has its backward step beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nn_gpu.architecture import DTYPES, Architecture, init_parameters
from nn_gpu.arrays import Arrays
from nn_gpu.batch_norm import normalise, normalise_backward
from nn_gpu.device import Device, resolve_device
from nn_gpu.shapes import N_CLASSES, N_PIXELS


class Network:
    """A multilayer perceptron whose parameters live on `device`.

    X is always n0 x m (784 x m for digits), one column per sample (the notebook's layout). One
    iteration by hand, in the notebook's names:

        net = Network.create(hidden=(10,), device="cpu", seed=0)
        cache = net.forward(X, keep=True)   # A0, Z1, A1, Z2, A2
        grads = net.backward(cache, y)      # dZ2, dW2, db2, dZ1, dW1, db1
        net.step(grads, alpha=0.10)         # W := W - alpha dW, b := b - alpha db

    nn_gpu.train runs the same equations without keeping what it need not: `gradients` fills
    `flat_grad` in place. All parameters share one flat buffer, `flat`; `params` = [W1, b1, ..., WL,
    bL] (with batch norm, then g1, ..., g_{L-1}) are views of it (shapes as in init_parameters), and
    `grads` are views of `flat_grad`, so an optimiser updates every parameter with one operation.
    `state` is `flat` followed by the batch norm's running statistics (`statistics`, none without):
    what a copy of the network (its best, its average) holds. How a batch is run (whole on the GPU; in
    blocks on worker threads on the CPU, nn_gpu.cpu) is the device's `runner`, not this class's: the
    math here is the same on every device.
    """

    def __init__(self, arch: Architecture, device: Device, params: Sequence[np.ndarray]):
        """params: host arrays named as arch.names, parameters then running statistics."""
        self.arch = arch
        self.device = device
        host = [np.asarray(p, dtype=arch.dtype) for p in params]
        if [p.shape for p in host] != [arch.shape(name) for name in arch.names]:
            raise ValueError(f"params must be {', '.join(arch.names)}, shaped as init_parameters makes them")
        self.state = device.to_device(np.concatenate([p.ravel() for p in host]))
        self.flat = self.state[: arch.n_parameters]
        self.flat_grad = device.xp.zeros_like(self.flat)
        arrays, count = self.views(self.state, host), len(host) - 2 * (arch.n_layers - 1) * arch.batch_norm
        self.params, self.statistics = arrays[:count], arrays[count:]
        self.grads = self.views(self.flat_grad, host[:count])
        L = arch.n_layers
        self.g = self.params[2 * L :] if arch.batch_norm else [None] * (L - 1)  # each hidden layer's scale
        self.running = list(zip(self.statistics[0::2], self.statistics[1::2])) or [None] * (L - 1)
        self.runner = device.runner()  # on the CPU: its threads and block size (nn_gpu.cpu.Blocks)

    @classmethod
    def create(
        cls,
        hidden: int | Sequence[int] = (10,),
        device: str | Device = "auto",
        seed: int = 0,
        init: str = "he",
        dtype: str = "float32",
        n_inputs: int = N_PIXELS,
        n_classes: int = N_CLASSES,
        batch_norm: bool = False,
    ) -> Network:
        """A new n_inputs-hidden...-n_classes network (784-...-10 for digits) with parameters drawn from
        `seed` (see init_parameters); hidden: the widths of the hidden layers, e.g. (10,), 10 or (256, 128);
        batch_norm: normalise each hidden layer over the batch (nn_gpu.batch_norm).

        device: "auto" (card 0 if usable, else the CPU), "cpu", "gpu", "gpu:N", or a Device.
        """
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
        hidden = (int(hidden),) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must list one or more layer widths of at least 1; got {hidden}")
        if min(n_inputs, n_classes) < 1:
            raise ValueError(f"n_inputs and n_classes must be at least 1; got {n_inputs} and {n_classes}")
        arch = Architecture(hidden, dtype, int(n_inputs), int(n_classes), bool(batch_norm))
        device = resolve_device(device) if isinstance(device, str) else device
        return cls(arch, device, init_parameters(arch, init, np.random.default_rng(seed)))

    @staticmethod
    def views(flat, shapes_of) -> list:
        """Views of the flat buffer `flat` shaped as each array of shapes_of, in order (params, grads)."""
        views, start = [], 0
        for p in shapes_of:
            views.append(flat[start : start + p.size].reshape(p.shape))
            start += p.size
        return views

    @property
    def W(self) -> list:
        return self.params[0 : 2 * self.n_layers : 2]

    @property
    def b(self) -> list:
        return self.params[1 : 2 * self.n_layers : 2]

    @property
    def n_layers(self) -> int:
        """L: the hidden layers and the output layer."""
        return self.arch.n_layers

    @property
    def parameter_names(self) -> list[str]:
        """["W1", "b1", ..., "WL", "bL"] (and with batch norm "g1", ...), the names of `params`."""
        return self.arch.names[: len(self.params)]

    @property
    def arrays(self) -> list:
        """`params`, then the running `statistics`: views of `state`, named as arch.names."""
        return self.params + self.statistics

    def __repr__(self) -> str:
        sizes = "-".join(map(str, self.arch.sizes))
        return (
            f"Network({sizes}{', batch norm' * self.arch.batch_norm}, {self.arch.dtype}, "
            f"{self.arch.n_parameters:,} parameters, on {self.device.describe()})"
        )

    def inputs(self, X):
        """A0 for X (n0 x m, one column per sample) on this network's device, in its dtype.

        uint8 pixels are scaled by 1/255 here (scale_pixels); floating X is taken as it is (pixels / 255,
        or features already scaled). ValueError, naming the expected shape, for anything else (an m x n0
        array among them).
        """
        X = check_columns(self.device.to_device(X), self.arch.n_inputs)
        if X.dtype == np.uint8:
            return scale_pixels(X, self.arch.dtype)
        return X.astype(self.arch.dtype, copy=False)

    def labels(self, y, m: int):
        """y on this network's device: m integer labels 0..C-1, one per column of X; ValueError otherwise."""
        y, C = self.device.to_device(y), self.arch.n_classes
        if y.shape != (m,):
            raise ValueError(f"y has shape {y.shape}; it must hold m = {m} labels, one per column of X")
        if y.dtype.kind not in "iu":
            raise ValueError(f"y holds {y.dtype}; it must hold integer labels 0..{C - 1}")
        if m and not 0 <= int(y.min()) <= int(y.max()) < C:  # host sync
            raise ValueError(f"y holds labels {int(y.min())}..{int(y.max())}; they must lie in 0..{C - 1}")
        return y

    def forward(self, X, keep: bool = False, masks: list | None = None, training: bool | None = None):
        """The forward pass for X (n0 x m, one column per sample): A_L = softmax(Z_L), C x m.

        With keep=True, a training step's forward pass, every array on the way kept for `backward`:
        Arrays A0 (n0 x m), Z1 and A1 (n_1 x m), ..., Z_L and A_L (C x m); with one hidden layer, the
        notebook's Z1, A1, Z2, A2. masks: dropout masks [M_0, ..., M_{L-1}] (n_l x m, or None for a
        layer without), the ones a training step draws (nn_gpu.dropout.masks); each A_l is kept
        multiplied by its mask, and M_l too. With batch norm, training (default: keep) normalises with
        the batch's statistics, moves the running ones as a training step does, and keeps Yhat_l and s_l;
        training=False, a prediction, normalises with the running statistics and moves nothing.
        """
        kept_Z, norms, training = [], [], keep if training is None else training
        Z_L, A = self.runner.whole(lambda: self._logits(X, kept_Z if keep else None, masks, training, norms))
        A_L = self.device.ops.softmax(Z_L)
        if not keep:
            return A_L
        cache = Arrays(A0=A[0])
        for l, (Z_l, A_l) in enumerate(zip([*kept_Z, Z_L], [*A[1:], A_L]), start=1):
            if l <= len(norms):
                cache[f"Yhat{l}"], cache[f"s{l}"] = norms[l - 1]
            cache[f"Z{l}"], cache[f"A{l}"] = Z_l, A_l
        for l, M_l in enumerate(masks or []):
            if M_l is not None:
                cache[f"M{l}"] = M_l
        return cache

    def backward(self, cache: Arrays, y) -> Arrays:
        """The backward pass from forward(X, keep=True) and the labels y (m): Arrays, from the top,
        dZ_L (C x m), dW_L, db_L, ..., dZ1 (n_1 x m), dW1 (n_1 x n0), db1 (n_1 x 1); dW and db are
        the gradients of the mean loss, shaped as W and b. The notebook's dZ2, dW2, db2, dZ1, dW1, db1.
        """
        L, ops, xp = self.n_layers, self.device.ops, self.device.xp
        A = [cache[f"A{l}"] for l in range(L)]
        m = A[0].shape[1]
        y = self.labels(y, m)
        flat = xp.zeros_like(self.flat)
        grads = self.views(flat, self.params)
        # dZ_L = A_L - Y (C x m) and db_L, from Z_L (its bias in it already: the op adds a zero one)
        dZ = ops.output_layer(cache[f"Z{L}"].copy(), xp.zeros_like(self.b[-1]), y, 0.0, grads[2 * L - 1], xp.zeros(2))
        kept_dZ: list = []
        masks = [cache.get(f"M{l}") for l in range(L)]
        norms = [(cache[f"Yhat{l}"], cache[f"s{l}"]) for l in range(1, L) if f"Yhat{l}" in cache]
        if self.arch.batch_norm and not norms:
            raise ValueError("backward needs a training step's forward pass: forward(X, keep=True), not training=False")
        self.runner.whole(lambda: self._backward(A, dZ, grads, kept_dZ, masks=masks, norms=norms))
        flat /= m  # every dW and db at once: the mean over the batch
        result = Arrays()
        for l, dZ_l in zip(range(L, 0, -1), kept_dZ):
            result[f"dY{l}" if l < L and norms else f"dZ{l}"] = dZ_l
            result[f"dW{l}"], result[f"db{l}"] = grads[2 * l - 2], grads[2 * l - 1]
            if l < L and norms:
                result[f"dg{l}"] = grads[2 * L + l - 1]
        return result

    def step(self, grads: Arrays, alpha: float) -> None:
        """W_l := W_l - alpha dW_l and b_l := b_l - alpha db_l for every layer (`grads` from backward).

        The same op as nn_gpu.train's update with no momentum (ops.sgd_update over the flat buffer),
        so a loop of forward, backward and step gives train's numbers.
        """
        xp, parts = self.device.xp, []
        for name, p in zip(self.parameter_names, self.params):
            g = xp.asarray(grads[f"d{name}"], dtype=p.dtype)
            if g.shape != p.shape:
                raise ValueError(f"d{name} is {' x '.join(map(str, g.shape))}; it must be shaped as {name}, {p.shape}")
            parts.append(g.ravel())
        g = xp.concatenate(parts)
        rate = self.device.to_device(np.array([[alpha]], dtype=self.arch.dtype))  # the schedule of one step
        self.device.ops.sgd_update(self.flat, g, xp.zeros_like(g), rate, xp.zeros(1, dtype=np.int64), 1, 0.0, 0.0)

    def gradients(self, X, y, dropout=None, label_smoothing: float = 0.0):
        """Forward and backward on one batch; fills `grads` with the gradients of the mean loss and
        returns (loss_sum, correct_sum), 0-d float64 arrays on the device (sums over the m samples).

        X: n0 x m, y: m integer labels, both on the device; dropout: a nn_gpu.dropout.Dropout, whose
        masks for its step are drawn inside the ops, or None; label_smoothing: eps of the smoothed
        targets, 0 for none. grads: [dW1, db1, ..., dWL, dbL], each the shape of its parameter.
        """
        sums = self.device.xp.zeros(2)
        self.sum_gradients(X, y, sums, dropout, label_smoothing)
        self.flat_grad /= X.shape[1]  # every dW and db at once: the mean over the batch
        return sums[0], sums[1]

    def sum_gradients(self, X, y, sums, dropout=None, label_smoothing: float = 0.0) -> None:
        """A training step's work before its update, all on the device: flat_grad := the gradients of the
        loss summed over X's m columns (the update divides by m), and sums (2, float64) += the loss and
        correct-prediction sums. The forward pass, the output layer, then each layer's backward from the top.
        """
        ops, width, L = self.device.ops, X.shape[1], self.n_layers
        scales = None if dropout is None else dropout.scales

        def sum_batch(X, y, flat, sums, first):  # columns first, first + 1, ... of the batch
            grads = self.grads if flat is self.flat_grad else self.views(flat, self.grads)
            norms: list = []
            draws = None if dropout is None else dropout.draws(first, width)
            A = self._activations(X, draws=draws, training=True, norms=norms)
            Z = ops.product(self.W[-1], A[-1])  # W_L A_{L-1}: the output layer adds b_L
            dZ = ops.output_layer(Z, self.b[-1], y, label_smoothing, grads[2 * L - 1], sums)  # dZ_L and db_L
            self._backward(A, dZ, grads, scales=scales, norms=norms)

        if self.arch.batch_norm:  # the batch's statistics need the whole batch: no blocks
            self.runner.whole(lambda: sum_batch(X, y, self.flat_grad, sums, 0))
        else:
            self.runner.sum_gradients(sum_batch, X, y, self.flat_grad, sums)

    def _activations(
        self, X, kept_Z=None, masks=None, draws=None, training: bool = False, norms: list | None = None
    ) -> list:
        """[A0, A1, ..., A_{L-1}]: the inputs A0 = inputs(X) (X n0 x m) and each hidden layer's output.
        Each hidden layer's Z_l is appended to kept_Z when a list is given. Dropout, if any: forward's
        masks multiply each A_l as it is made; a training step's draws are applied by the ops. Batch
        norm, if any: with the batch's statistics when training (each layer's (Yhat_l, s_l) appended
        to norms), else the running ones."""
        masks, draws = masks or [None] * self.n_layers, draws or [None] * self.n_layers
        ops, xp, A = self.device.ops, self.device.xp, [self.inputs(X)]
        if masks[0] is not None:  # a new array in X's layout (the fast one for W1 A0 on the CPU): X is never written
            A[0] = xp.multiply(A[0], masks[0], out=xp.empty_like(A[0]))
        elif draws[0] is not None:
            A[0] = ops.dropout(A[0], draws[0])
        for W, b, g, running, M, draw in zip(self.W, self.b, self.g, self.running, masks[1:], draws[1:]):
            norm = None if g is None else (g, running, training, norms)
            A.append(hidden_forward(ops, W, b, A[-1], kept_Z, draw, norm))
            if M is not None:
                A[-1] *= M
        return A

    def _logits(self, X, kept_Z=None, masks=None, training: bool = False, norms: list | None = None):
        """(Z_L, [A0, A1, ..., A_{L-1}]): the forward pass for X (n0 x m) up to the logits Z_L (C x m),
        the A_l made as _activations makes them."""
        A = self._activations(X, kept_Z, masks, training=training, norms=norms)
        return output_forward(self.device.ops, self.W[-1], self.b[-1], A[-1]), A

    def _backward(self, A, dZ, grads, kept_dZ=None, masks=None, scales=None, norms: list | None = None) -> None:
        """Each layer's backward step, from dZ_L (its db_L in grads already) down: the summed dW_l, and
        db_l for every layer below the top, written into grads. Each dZ_l (L..1; with batch norm, the
        dY_l that dW_l is made of) is appended to kept_dZ when a list is given. Dropout: forward's masks,
        or a training step's scales s_l = 1 / (1 - p_l). Batch norm: norms, forward's (Yhat_l, s_l)."""
        masks, scales, L = masks or [None] * len(A), scales or [1] * len(A), len(A)
        for l in range(L - 1, -1, -1):  # A[l] is A_l, the input of layer l + 1
            if kept_dZ is not None:
                kept_dZ.append(dZ)
            db = grads[2 * l - 1] if l > 0 else None  # db_l, made with dZ_l below: none under the first layer
            dZ = layer_backward(self.device.ops, self.W[l], A[l], dZ, grads[2 * l], db, masks[l], scales[l])
            if l > 0 and norms:  # dY_l from dZ_l, and dg_l
                dZ = normalise_backward(dZ, self.g[l - 1], *norms[l - 1], grads[2 * L + l - 1])

    def evaluate(self, X, y, batch_size: int = 8192) -> tuple[float, float]:
        """(mean loss, accuracy) over X (n0 x m, one column per sample) and labels y, in batches; on the host."""
        X = check_columns(self.device.to_device(X), self.arch.n_inputs)
        m = X.shape[1]
        y = self.labels(y, m)

        def sums(start):
            Z, _ = self._logits(X[:, start : start + batch_size])
            _, loss, correct = self.device.ops.softmax_cross_entropy(Z, y[start : start + batch_size])
            return float(loss.sum()), float(correct.sum())  # host sync

        loss_sums, correct_sums = zip(*self.runner.map_batches(sums, m, batch_size))
        return sum(loss_sums) / m, sum(correct_sums) / m

    def predict_proba(self, X, batch_size: int = 8192) -> np.ndarray:
        """Class probabilities A_L (C x m) for X (n0 x m, one column per sample), as a host array."""

        def probabilities(start):
            Z, _ = self._logits(X[:, start : start + batch_size])
            return self.device.to_host(self.device.ops.softmax(Z))

        return np.concatenate(self.runner.map_batches(probabilities, X.shape[1], batch_size), axis=1)

    def predict(self, X, batch_size: int = 8192) -> np.ndarray:
        """The predicted class (0..C-1; the digit for digits) of each column of X (n0 x m): argmax of A_L,
        m int64 on the host."""
        return self.predict_proba(X, batch_size).argmax(axis=0)


def check_columns(X, n_inputs: int = N_PIXELS):
    """X itself if it is n_inputs x m (one column per sample) of uint8 pixels or floating values
    (pixels / 255, or scaled features); otherwise ValueError naming the shape expected (and, for
    m x n_inputs, the fix)."""
    if X.ndim != 2 or X.shape[0] != n_inputs:
        shape = " x ".join(map(str, X.shape)) or "a scalar"
        hint = ": one row per sample; pass X.T" if X.ndim == 2 and X.shape[1] == n_inputs else ""
        raise ValueError(f"X is {shape}{hint}; nn_gpu takes X as {n_inputs} x m, one column per sample")
    if X.dtype != np.uint8 and X.dtype.kind != "f":
        raise ValueError(f"X holds {X.dtype}: pass uint8 pixels 0..255, or floating values (pixels / 255)")
    return X


# Each layer's forward step, and under it its backward step (from the top, l = L..1).


def hidden_forward(ops, W, b, A_prev, kept_Z: list | None = None, draw=None, norm=None):
    """A_l = ReLU(Z_l), Z_l = W_l A_{l-1} + b_l: n_l x m, for W_l n_l x n_{l-1} and A_{l-1} n_{l-1} x m;
    times the step's dropout mask M_l when `draw` (a nn_gpu.dropout.Draw) is given. With batch norm,
    norm = (g_l, (running mean, running var), training, norms) and Z_l = g_l Yhat_l + b_l
    (nn_gpu.batch_norm), (Yhat_l, s_l) appended to norms when training.

    Z_l is appended to kept_Z when a list is given; otherwise it is never made (bias + ReLU is one op).
    """
    WA = ops.product(W, A_prev)
    if norm is not None:
        g, running, training, norms = norm
        Yhat, s = normalise(WA, *running, training)
        if training and norms is not None:
            norms.append((Yhat, s))
        WA = g * Yhat
    if kept_Z is not None:
        kept_Z.append(WA + b)  # Z_l, before the op below turns W A into A_l in place
    return ops.bias_relu(WA, b, draw)


def output_forward(ops, W, b, A_prev):
    """Z_L = W_L A_{L-1} + b_L: C x m, the logits, for prediction. A training step hands W_L A_{L-1} to
    ops.output_layer instead, which adds b_L and takes softmax and the loss on the way to dZ_L = A_L - Y."""
    return ops.product(W, A_prev) + b


def layer_backward(ops, W, A_prev, dZ, dW, db_prev, M_prev=None, scale=1):
    """Layer l's backward step, from dZ_l (n_l x m) and its input A_{l-1} (n_{l-1} x m):

        dW_l = dZ_l A_{l-1}^T       (n_l x n_{l-1}, summed over samples: / m later)
        dZ_{l-1} = W_l^T dZ_l * ReLU'(Z_{l-1})   (n_{l-1} x m), returned when a layer lies below,
                   W_l^T dZ_l * M_{l-1} * ReLU'(Z_{l-1})   with dropout mask M_{l-1} (n_{l-1} x m)
        db_{l-1} = sum over samples of dZ_{l-1}     (n_{l-1} x 1, one per unit), into db_prev

    dW and db_prev (None for the first layer: nothing lies below it) are written in place;
    ReLU'(Z_{l-1}) = [A_{l-1} > 0], since A_{l-1} = ReLU(Z_{l-1}). With dropout, M_prev is the mask
    itself (forward's), or scale = 1 / (1 - p) (a training step's): A_{l-1}, kept after its mask, is 0
    wherever M_{l-1} is, and M_{l-1} = scale elsewhere.
    """
    ops.product(dZ, A_prev.T, out=dW)
    if db_prev is None:
        return None
    dA = ops.product(W.T, dZ)
    if M_prev is not None:
        dA *= M_prev
    return ops.relu_backward(dA, A_prev, scale, db_prev)


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
