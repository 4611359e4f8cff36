"""The op table: the steps whose code differs between a plain array version and a CUDA kernel.

Everything else in nn_gpu is written once against `xp`. These steps are written twice, side by side
in spirit: here as plain `xp` code that runs on NumPy (and on CuPy, as the reference the kernels are
tested against), and in nn_gpu/kernels.py as CUDA kernels. A training step is nothing but calls into
this table (Network.sum_gradients, then the optimiser's update): on the GPU each call is one kernel,
so the calls a step makes are the kernels it launches. Shapes are the notebook's: one column per
sample, C classes or H units in rows, m samples.

    product(A, B, out=None)      A B (into out when given)               A: n x k, B: k x m
    bias_relu(Z, b, draw=None)   A = ReLU(Z + b) [* M, the step's dropout mask]    Z: H x m, b: H x 1
    dropout(A, draw)             A * M, a new array in A's layout        A: n0 x m (the inputs)
    relu_backward(dA, A,         dZ = dA * scale * [A > 0] (ReLU'(Z) = [A > 0]); db = the sum of dZ
                  scale, db)     over samples (H x 1)                    dA, A: H x m
    output_layer(Z, b, y, eps,   Z := dZ_L = softmax(Z + b) - (1 - eps) onehot(y) - eps / C; db = the
                 db, sums)       sum of dZ_L over samples; sums += (loss sum, correct sum)   Z: C x m
    softmax(Z)                   A = exp(Z - max) / sum exp(Z - max)     Z: C x m
    softmax_cross_entropy(Z, y)  dZ = softmax(Z) - onehot(y),            Z: C x m, y: m
                                 loss = -log softmax(Z)[y], correct = [argmax Z = y]
    gather(X, y, order, done,    step t = done + 1's mini-batch: the samples order[s : s + count],
           first, batches, size, s = ((t - 1 - first) mod batches) size, as (X_batch n0 x count,
           count)                y_batch); first: the steps done before X's first epoch
    sgd_update(p, g, v, rows,    g := g / count;  d = g + weight_decay p;  v := momentum v + d;
               done, count,      p := p - lr v, lr = rows[(t - 1) mod W]; then done := t.
               momentum,         p, g, v: all parameters as one flat buffer; rows: W x 1, the
               weight_decay)     learning rate of each step (nn_gpu.optim.ScheduleTable)
    adam_update(p, g, m, v,      g := g / count;  d = g + l2 p;  m := beta1 m + (1 - beta1) d;
                rows, done,      v := beta2 v + (1 - beta2) d^2;
                count, beta1,    p := shrink p - step_size m / (sqrt(v) / root_correction2 + eps),
                beta2, eps, l2)  (step_size, root_correction2, shrink) = rows[(t - 1) mod W]; done := t

`done` is the run's step counter on the device (int64, the steps completed) and `rows` the
optimiser's per-step scalars: what changes from step to step is read from device memory, so a step
can be replayed as a CUDA graph (nn_gpu.step). `draw` is a nn_gpu.dropout.Draw. Ops that overwrite
an argument say so; every result keeps the input's dtype. Sums over samples (db, the loss and
correct sums, in float64) are made in a fixed order on every device: the same bits run to run.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import numpy as np


class Ops(NamedTuple):
    """One implementation of each device-specific step (see the module docstring)."""

    product: Any
    bias_relu: Any
    dropout: Any
    relu_backward: Any
    output_layer: Any
    softmax: Any
    softmax_cross_entropy: Any
    gather: Any
    sgd_update: Any
    adam_update: Any


def array_module(array):
    """numpy for a NumPy array, cupy for a CuPy array (without importing CuPy otherwise)."""
    if isinstance(array, np.ndarray):
        return np
    return importlib.import_module("cupy")


def product(A, B, out=None):
    """A B, a new n x m array (or written into out), for A n x k and B k x m."""
    return array_module(A).matmul(A, B, out=out)


def _mask(draw, rows: int, columns: int, xp):
    """The draw's D on the device of xp: a boolean rows x columns array."""
    kept = draw.kept(rows, columns)
    return kept if xp is np else xp.asarray(kept)


def bias_relu(Z, b, draw=None):
    """A = ReLU(Z + b), times the step's dropout mask when `draw` is given, written into Z and returned.
    Z: H x m, b: H x 1."""
    xp = array_module(Z)
    xp.add(Z, b, out=Z)
    xp.maximum(Z, 0, out=Z)
    if draw is not None:  # M = D s: kept units times s, dropped ones times 0, as the kernel's factor
        Z *= draw.scale
        Z *= _mask(draw, *Z.shape, xp)
    return Z


def dropout(A, draw):
    """A * M, a new array in A's layout (A: the n0 x m inputs of a training step)."""
    xp = array_module(A)
    out = xp.multiply(A, draw.scale, out=xp.empty_like(A))
    out *= _mask(draw, *A.shape, xp)
    return out


def relu_backward(dA, A, scale, db):
    """dZ = dA * scale * [A > 0], written into dA and returned, and db (H x 1) = its sums over samples.

    ReLU'(Z) = [A > 0] as A = ReLU(Z); with dropout, A is the layer's output after its mask M (0 for a
    dropped unit) and scale = 1 / (1 - p), so dZ = dA * M * ReLU'(Z). Without, scale is 1.
    """
    xp = array_module(dA)
    if scale != 1:
        dA *= scale
    xp.multiply(dA, A > 0, out=dA)
    xp.sum(dA, axis=1, keepdims=True, out=db)
    return dA


def _shifted_exp(Z, zmax=None):
    """(E, s): E = exp(Z - max over classes) (C x m) and s = its column sums (1 x m); zmax: the column
    maxima (1 x m) when they are known already."""
    xp = array_module(Z)
    E = Z - (Z.max(axis=0, keepdims=True) if zmax is None else zmax)  # C x m, each column's largest entry is 0
    xp.exp(E, out=E)
    return E, E.sum(axis=0, keepdims=True)


def softmax(Z):
    """A = softmax(Z) per column, a new C x m array; stable for any finite Z."""
    E, s = _shifted_exp(Z)
    return E / s


def softmax_cross_entropy(Z, y):
    """(dZ, loss, correct) for logits Z (C x m) and integer labels y (m,), all in Z's dtype.

    dZ = softmax(Z) - onehot(y) is written into Z (C x m); loss = -log softmax(Z)[y] is taken
    from log-softmax, log s - (Z[y] - max), so it is exact for logits of any size (m,);
    correct = [argmax Z = y] as 0.0 or 1.0 (m,). No one-hot matrix is built.
    """
    xp = array_module(Z)
    columns = xp.arange(Z.shape[1])
    correct = (Z.argmax(axis=0) == y).astype(Z.dtype)  # m
    zmax = Z.max(axis=0, keepdims=True)  # 1 x m
    shifted_y = Z[y, columns] - zmax[0]  # m, Z[y] - max
    E, s = _shifted_exp(Z, zmax)
    loss = xp.log(s[0]) - shifted_y  # m, -log softmax(Z)[y]
    xp.divide(E, s, out=Z)
    Z[y, columns] -= 1
    return Z, loss, correct


def smooth_labels(dZ, y, eps: float):
    """dZ_L = A_L - Y (C x m, from softmax_cross_entropy) becomes A_L - ((1 - eps) Y + eps / C), in place:
    the gradient of the cross-entropy against targets that give eps / C to every class and the rest to
    the label (Szegedy et al. 2016). dZ_L + eps Y - eps / C: eps added at each label, eps / C taken from all."""
    xp = array_module(dZ)
    dZ -= dZ.dtype.type(eps / dZ.shape[0])
    dZ[y, xp.arange(dZ.shape[1])] += dZ.dtype.type(eps)
    return dZ


def output_layer(Z, b, y, label_smoothing, db, sums):
    """The output layer's training step from Z = W_L A_{L-1} (C x m, without its bias) and labels y (m):
    Z becomes dZ_L = softmax(Z + b) - ((1 - eps) onehot(y) + eps / C) in place and is returned; db
    (C x 1) = its sums over samples; sums (2, float64) += the batch's cross-entropy (against the
    plain labels) and correct predictions."""
    xp = array_module(Z)
    Z += b
    _, loss, correct = softmax_cross_entropy(Z, y)
    if label_smoothing:
        smooth_labels(Z, y, label_smoothing)
    xp.sum(Z, axis=1, keepdims=True, out=db)
    sums[0] += loss.sum()
    sums[1] += correct.sum()
    return Z


def gather(X, y, order, done, first: int, batches: int, size: int, count: int):
    """Step t = done + 1's mini-batch of the epoch whose shuffle is `order` (m,): the samples order[s :
    s + count], s = ((t - 1 - first) mod batches) size, as (X_batch n0 x count, y_batch count), where
    X's epochs start after step `first`. X is n0 x m, the transpose of the m x n0 samples, and X_batch
    the transpose of its count x n0 rows. Reads the step counter: the CPU's way (the kernel reads it on
    the card)."""
    start = (int(done[0]) - first) % batches * size
    rows = order[start : start + count]
    return X.T[rows].T, y[rows]


def _row(rows, done) -> int:
    """The schedule table's row of step t = done + 1: (t - 1) mod W. Reads the step counter: the CPU's way."""
    return int(done[0]) % rows.shape[0]


def sgd_update(p, g, v, rows, done, count, momentum: float, weight_decay: float) -> None:
    """The update that ends step t = done + 1 (see the module docstring): SGD with momentum and L2 weight
    decay, in place on p, g (the mean gradient is left in it) and v, at learning rate rows[(t - 1) mod W];
    then the step is counted. PyTorch's SGD: with momentum 0 and weight_decay 0, p := p - lr g."""
    lr = rows[_row(rows, done), 0]
    g /= count
    d = g + weight_decay * p if weight_decay else g
    v *= momentum
    v += d
    p -= lr * v
    done[0] += 1


def adam_update(p, g, m, v, rows, done, count, beta1, beta2, eps, l2) -> None:
    """The update that ends step t = done + 1: Adam or AdamW, in place on p, g, m and v, with step t's
    step_size, root_correction2 and shrink from rows[(t - 1) mod W]; then the step is counted. Scalars
    are in p's dtype and every operation is done in the CUDA kernel's order (nn_adam_update), so both
    give the same bits.

    d = g + l2 p;  m := beta1 m + (1 - beta1) d;  v := beta2 v + (1 - beta2) d^2;
    p := shrink p - step_size m / (sqrt(v) / root_correction2 + eps). nn_gpu.optim.Adam gives the
    scalars: Adam's L2 (l2 = weight_decay, shrink = 1) or AdamW's decoupled decay (l2 = 0,
    shrink = 1 - lr weight_decay), and the bias corrections of step t in step_size and root_correction2.
    """
    xp, T = array_module(p), p.dtype.type
    step_size, root_correction2, shrink = rows[_row(rows, done)]
    beta1, beta2, eps, l2 = map(T, (beta1, beta2, eps, l2))
    g /= count
    d = g + l2 * p if l2 else g
    m *= beta1
    m += (T(1) - beta1) * d
    v *= beta2
    v += (T(1) - beta2) * d * d
    if shrink != 1:
        p *= shrink
    p -= step_size * m / (xp.sqrt(v) / root_correction2 + eps)
    done[0] += 1


def table(namespace: dict) -> Ops:
    """The op table of the functions of a module named as its fields (each implementation's own names)."""
    return Ops(**{name: namespace[name] for name in Ops._fields})


REFERENCE_OPS = table(globals())
