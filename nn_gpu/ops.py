"""The op table: the few steps whose code differs between a plain array version and a CUDA kernel.

Everything else in nn_gpu (matrix products, sums, the parameter update) is written once against
`xp`. These four steps are written twice, side by side in spirit: here as plain `xp` code that
runs on NumPy (and on CuPy, as the reference the kernels are tested against), and in
nn_gpu/kernels.py as fused CuPy ElementwiseKernels. Shapes follow the brief: one column per
sample, C classes or H units in rows, m samples.

    bias_relu(Z, b)              A = ReLU(Z + b)                         Z: H x m, b: H x 1
    relu_backward(dA, A)         dZ = dA * ReLU'(Z), ReLU'(Z) = [A > 0]  dA, A: H x m
    softmax(Z)                   A = exp(Z - max) / sum exp(Z - max)     Z: C x m
    softmax_cross_entropy(Z, y)  dZ = softmax(Z) - onehot(y),            Z: C x m, y: m
                                 loss = -log softmax(Z)[y], correct = [argmax Z = y]
    sgd_update(p, g, v, lr,      d = g + weight_decay p,                 all parameters as one
               momentum,         v := momentum v + d,                    flat buffer: p, g, v
               weight_decay)     p := p - lr v
    adam_update(p, g, m, v,      d = g + l2 p,                           flat buffers as above;
                beta1, beta2,    m := beta1 m + (1 - beta1) d,            step_size, root_correction2
                eps, l2, shrink, v := beta2 v + (1 - beta2) d^2,          from the step number
                step_size,       p := shrink p - step_size m /            (nn_gpu.optim.Adam)
                root_correction2)     (sqrt(v) / root_correction2 + eps)
    product(W, A)                W A (the CPU asks OpenBLAS for it in     W: n x k, A: k x m
                                 its fastest layout: nn_gpu.cpu)

Ops that overwrite an argument say so (sgd_update writes p and v, adam_update p, m and v; never g); every result keeps the
input's dtype.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import numpy as np


class Ops(NamedTuple):
    """One implementation of each device-specific step (see the module docstring)."""

    bias_relu: Any
    relu_backward: Any
    softmax: Any
    softmax_cross_entropy: Any
    sgd_update: Any
    adam_update: Any
    product: Any


def array_module(array):
    """numpy for a NumPy array, cupy for a CuPy array (without importing CuPy otherwise)."""
    if isinstance(array, np.ndarray):
        return np
    return importlib.import_module("cupy")


def bias_relu(Z, b):
    """A = ReLU(Z + b), written into Z and returned. Z: H x m, b: H x 1."""
    xp = array_module(Z)
    xp.add(Z, b, out=Z)
    return xp.maximum(Z, 0, out=Z)


def relu_backward(dA, A):
    """dZ = dA * ReLU'(Z), written into dA and returned; ReLU'(Z) = [A > 0] as A = ReLU(Z)."""
    xp = array_module(dA)
    return xp.multiply(dA, A > 0, out=dA)


def _shifted_exp(Z):
    """(E, s): E = exp(Z - max over classes) (C x m) and s = its column sums (1 x m)."""
    xp = array_module(Z)
    E = Z - Z.max(axis=0, keepdims=True)  # C x m, each column's largest entry is 0
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
    shifted_y = Z[y, columns] - Z.max(axis=0)  # m, Z[y] - max
    E, s = _shifted_exp(Z)
    loss = xp.log(s[0]) - shifted_y  # m, -log softmax(Z)[y]
    xp.divide(E, s, out=Z)
    Z[y, columns] -= 1
    return Z, loss, correct


def sgd_update(p, g, v, lr: float, momentum: float, weight_decay: float) -> None:
    """One SGD step with momentum and L2 weight decay, in place on p and v; g is only read (PyTorch's SGD).

    d = g + weight_decay p;  v := momentum v + d;  p := p - lr v. With momentum 0 and weight_decay 0
    this is plain gradient descent, p := p - lr g. p, g, v: flat buffers of every parameter.
    """
    d = g + weight_decay * p if weight_decay else g
    v *= momentum
    v += d
    p -= lr * v


def adam_update(p, g, m, v, beta1, beta2, eps, l2, shrink, step_size, root_correction2) -> None:
    """One Adam step, in place on p, m and v; g is only read. Scalars are rounded to p's dtype first and
    every operation is done in the CUDA kernel's order (nn_adam_update), so both give the same bits.

    d = g + l2 p;  m := beta1 m + (1 - beta1) d;  v := beta2 v + (1 - beta2) d^2;
    p := shrink p - step_size m / (sqrt(v) / root_correction2 + eps). nn_gpu.optim.Adam gives the
    scalars: Adam's L2 (l2 = weight_decay, shrink = 1) or AdamW's decoupled decay (l2 = 0,
    shrink = 1 - lr weight_decay), and the bias corrections of step t in step_size and root_correction2.
    """
    xp, T = array_module(p), p.dtype.type
    beta1, beta2, eps, l2, shrink, step_size, root_correction2 = map(
        T, (beta1, beta2, eps, l2, shrink, step_size, root_correction2)
    )
    d = g + l2 * p if l2 else g
    m *= beta1
    m += (T(1) - beta1) * d
    v *= beta2
    v += (T(1) - beta2) * d * d
    if shrink != 1:
        p *= shrink
    p -= step_size * m / (xp.sqrt(v) / root_correction2 + eps)


def product(W, A):
    """W A, a new n x m array, for W n x k and A k x m."""
    return W @ A


REFERENCE_OPS = Ops(bias_relu, relu_backward, softmax, softmax_cross_entropy, sgd_update, adam_update, product)
