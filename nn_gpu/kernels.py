"""The op table on the GPU: CUDA kernels built from nn_gpu/cuda_source.py, and cuBLAS products.

Imported only once a GPU has been found usable (nn_gpu.device), so CuPy is needed here alone.
ReLU, dropout and the softmax kernels are CuPy ElementwiseKernels; the training step's kernels that
sum over samples (the output layer, ReLU' with db) and the batch gather and updates, which read the
step counter, are one RawModule (STEP_SOURCE). Each is built once at import and compiled by CuPy on
first use. The products go through nn_gpu's own cuBLAS handle (nn_gpu.cublas), which can be captured
in a CUDA graph. Every wrapper has the contract of its plain version in nn_gpu/ops.py, and each is
one kernel launch: nothing here waits for the GPU or reads its memory.
"""

import functools

import cupy as cp
import numpy as np

from nn_gpu.cublas import product  # noqa: F401  (the op table's W A: table(globals()) takes it by name)
from nn_gpu.cuda_source import CUDA_SOURCE, KERNELS, STEP_OPTIONS, STEP_SOURCE, STEP_THREADS, step_launch
from nn_gpu.ops import table

ELEMENTWISE_KERNELS = tuple(
    cp.ElementwiseKernel(in_params, out_params, operation, name, preamble=CUDA_SOURCE)
    for name, in_params, out_params, operation in KERNELS
)
_bias_relu, _bias_relu_dropout, _dropout, _softmax, _softmax_cross_entropy = ELEMENTWISE_KERNELS
_step_module = cp.RawModule(code=CUDA_SOURCE + STEP_SOURCE, options=STEP_OPTIONS)
SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


@functools.cache
def _card(index: int) -> tuple[int, cp.ndarray]:
    """(multiprocessors, the step kernels' arrival count) of card `index`. The count is 0 between
    launches (each kernel's last block resets it), and one stream's kernels take it in turn."""
    with cp.cuda.Device(index):
        return cp.cuda.Device().attributes["MultiProcessorCount"], cp.zeros(1, dtype=np.uint32)


def _grid(name: str, work: int, rows: int = 1) -> tuple[int, ...]:
    return step_launch(name, work, _card(cp.cuda.runtime.getDevice())[0], rows)[0]


def _launch(name: str, dtype, grid: tuple[int, ...], arguments: tuple, counted: bool = True) -> None:
    """Launch step kernel `name` for dtype; `counted` kernels take the arrival count last."""
    kernel = _step_module.get_function(f"nn_step_{name}_{SUFFIX[np.dtype(dtype)]}")
    arrived = (_card(cp.cuda.runtime.getDevice())[1],) if counted else ()
    kernel(grid, (STEP_THREADS,), (*arguments, *arrived))


def _contiguous(Z):
    if not Z.flags.c_contiguous:
        raise ValueError(f"these kernels need a C-contiguous array, got strides {Z.strides}")
    return Z


def _draw(draw) -> tuple:
    """A Draw's arguments of the dropout kernels: the step counter, the key, the threshold, the scale."""
    return (draw.done, np.uint64(draw.key[0]), np.uint64(draw.key[1]), np.uint32(draw.threshold), draw.scale)


def bias_relu(Z, b, draw=None):
    """A = ReLU(Z + b) [* the step's dropout mask], written into Z (H x m) and returned; b is H x 1."""
    if draw is None:
        return _bias_relu(b, Z)
    return _bias_relu_dropout(b, *_draw(draw), _contiguous(Z))


def dropout(A, draw):
    """A * M, a new array in A's layout (the n0 x m transpose of the samples)."""
    return _dropout(A, *_draw(draw), cp.empty_like(A))


def relu_backward(dA, A, scale, db):
    """dZ = dA * scale * [A > 0] written into dA (H x m) and returned; db (H x 1) := its sums over samples."""
    H, m = _contiguous(dA).shape
    if not A.flags.c_contiguous or H > 65535:  # gridDim.y holds the rows
        raise ValueError(f"relu_backward takes C-contiguous H x m arrays with H <= 65,535, got {dA.shape}")
    grid = _grid("relu_backward_db", m, H)
    partials = cp.empty(grid[0] * H, dtype=np.float64)
    _launch("relu_backward_db", dA.dtype, grid, (dA, A, np.int64(m), dA.dtype.type(scale), db, partials))
    return dA


def output_layer(Z, b, y, label_smoothing, db, sums):
    """Z (C x m, W_L A_{L-1}) becomes dZ_L in place; db (C x 1) := its sums; sums (2, float64) += loss and correct sums."""
    C, m = _contiguous(Z).shape
    grid = _grid("output_layer", m)
    partials = cp.empty(grid[0] * (C + 2), dtype=np.float64)
    T = Z.dtype.type
    y = y if y.dtype == np.int32 else y.astype(np.int32)
    arguments = (Z, b, y, np.int32(C), np.int64(m), T(label_smoothing), T(label_smoothing / C), db, partials, sums)
    _launch("output_layer", Z.dtype, grid, arguments)
    return Z


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


def gather(X, y, order, done, first, batches, size, count):
    """Step done + 1's mini-batch (X_batch n0 x count, the transpose of its rows; y_batch count int32)."""
    samples = _contiguous(X.T)  # m x n0
    n0 = samples.shape[1]
    rows = cp.empty((count, n0), dtype=X.dtype)
    y_batch = cp.empty(count, dtype=np.int32)
    sizes = (np.int64(n) for n in (first, batches, size, count, n0))
    arguments = (samples, y, order, done, *sizes)
    _launch("gather", X.dtype, _grid("gather", count * n0), (*arguments, rows, y_batch), counted=False)
    return rows.T, y_batch


def sgd_update(p, g, v, rows, done, count, momentum, weight_decay):
    """The step's update: g := g / count; SGD at lr = rows[done mod W]; done += 1. One kernel over the flat buffers."""
    T = p.dtype.type
    arguments = (p, g, v, np.int64(p.size), rows, np.int64(len(rows)), done, np.int64(count))
    _launch("sgd", p.dtype, _grid("sgd", p.size), (*arguments, T(momentum), T(weight_decay)))


def adam_update(p, g, m, v, rows, done, count, beta1, beta2, eps, l2):
    """The step's update: g := g / count; Adam or AdamW with rows[done mod W]; done += 1. One kernel."""
    T = p.dtype.type
    arguments = (p, g, m, v, np.int64(p.size), rows, np.int64(len(rows)), done, np.int64(count))
    _launch("adam", p.dtype, _grid("adam", p.size), (*arguments, T(beta1), T(beta2), T(eps), T(l2)))


KERNEL_OPS = table(globals())
