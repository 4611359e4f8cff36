"""The op table on the GPU: CuPy ElementwiseKernels built from nn_gpu/cuda_source.py.

Imported only once a GPU has been found usable (nn_gpu.device), so CuPy is needed here alone.
Each kernel is built once at import and compiled by CuPy on its first call for each dtype.
The wrappers below have the same contracts as the plain versions in nn_gpu/ops.py.
"""

import cupy as cp

from nn_gpu.cuda_source import CUDA_SOURCE, KERNELS
from nn_gpu.ops import Ops, product

ELEMENTWISE_KERNELS = tuple(
    cp.ElementwiseKernel(in_params, out_params, operation, name, preamble=CUDA_SOURCE)
    for name, in_params, out_params, operation in KERNELS
)
_bias_relu, _relu_backward, _softmax, _softmax_cross_entropy, _sgd_update, _adam_update = ELEMENTWISE_KERNELS


def _contiguous(Z):
    if not Z.flags.c_contiguous:
        raise ValueError(f"softmax kernels need a C-contiguous C x m array, got strides {Z.strides}")
    return Z


def bias_relu(Z, b):
    """A = ReLU(Z + b), written into Z (H x m) and returned; b is H x 1."""
    return _bias_relu(b, Z)


def relu_backward(dA, A):
    """dZ = dA * [A > 0], written into dA (H x m) and returned."""
    return _relu_backward(A, dA)


def softmax(Z):
    """A = softmax(Z) per column, a new C x m array."""
    C, m = _contiguous(Z).shape
    A = cp.empty_like(Z)
    _softmax(Z, C, A, size=m)
    return A


def softmax_cross_entropy(Z, y):
    """(dZ, loss, correct): dZ = softmax(Z) - onehot(y) written into Z (C x m); loss, correct (m,)."""
    C, m = _contiguous(Z).shape
    loss = cp.empty(m, dtype=Z.dtype)
    correct = cp.empty(m, dtype=Z.dtype)
    _softmax_cross_entropy(y, C, Z, loss, correct)
    return Z, loss, correct


def sgd_update(p, g, v, lr, momentum, weight_decay):
    """d = g + weight_decay p; v := momentum v + d; p := p - lr v: one kernel over the flat buffers; g only read."""
    dtype = p.dtype.type
    _sgd_update(g, dtype(lr), dtype(momentum), dtype(weight_decay), p, v)


def adam_update(p, g, m, v, beta1, beta2, eps, l2, shrink, step_size, root_correction2):
    """Adam or AdamW (nn_gpu.ops.adam_update): one kernel over the flat buffers; p, m, v written, g only read."""
    T = p.dtype.type
    scalars = (beta1, beta2, eps, l2, shrink, step_size, root_correction2)
    _adam_update(g, *map(T, scalars), p, m, v)


KERNEL_OPS = Ops(
    bias_relu, relu_backward, softmax, softmax_cross_entropy, sgd_update, adam_update, product
)  # W A: cuBLAS  # W A: cuBLAS
