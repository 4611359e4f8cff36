"""The CUDA math run on the CPU: nn_gpu/cuda_source.py compiled as host C++ by g++, against the op table.

CUDA's qualifiers are defined away (`__device__`, `__forceinline__`, `__global__`), and the few CUDA
built-ins the source names get sequential stand-ins (block and thread indices as globals, atomicAdd
as +=, __threadfence as nothing). Each ElementwiseKernel's own operation (from KERNELS) becomes a
host loop over `i`, so the calls are tested as well as the device functions they make. The training
step's raw kernels run their whole grid, block by block, with one thread per block (so that
__syncthreads has nothing to wait for): their index arithmetic, their partial sums and the last
block's addition of them are all exercised. Philox draws are compared with NumPy's own Philox. The
fused step's update kernel and its weight-gradient kernel run likewise, and its per-sample device
functions are checked against the network's own forward and backward pass. This is the math only:
warps, shared memory between threads, atomics and launches need a card (tests/test_gpu.py).
"""

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from nn_gpu import dropout
from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.cuda_source import CUDA_SOURCE, KERNEL_LAYOUTS, KERNELS, STEP_SOURCE
from nn_gpu.device import cpu_device
from nn_gpu.fused_source import (
    FUSED_BUILDS,
    FUSED_REDUCE_GROUPS,
    FUSED_SOURCE,
    SUFFIXES,
    fused_launch,
    n_entries,
    partials_kernel,
)
from nn_gpu.model import Network
from nn_gpu.ops import REFERENCE_OPS as ops
from nn_gpu.optim import SGD

TYPES = {"f32": ("float", np.float32), "f64": ("double", np.float64)}
ARGUMENT_TYPES = {  # None: the kernel's floating type
    "T": None,
    "L": "long long",
    "int32": "int",
    "int64": "long long",
    "uint64": "unsigned long long",
    "uint32": "unsigned int",
}

PRELUDE = r"""
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
using std::memcpy;
#define __device__
#define __forceinline__ inline
#define __global__
#define __shared__ static
using std::exp;
using std::log;
using std::sqrt;
using std::min;
struct nn_dim3 { unsigned x, y, z; };
static nn_dim3 threadIdx, blockIdx, blockDim, gridDim;
static void __syncthreads() {}
static void __threadfence() {}
template <typename T> T atomicAdd(T* address, T value) { T old = *address; *address += value; return old; }
#define __host__
#define __launch_bounds__(...)
struct uint4 { unsigned int x, y, z, w; };
static uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) { return {x, y, z, w}; }
static float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, sizeof f); return f; }
static unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
    // byte n of the result: byte (s >> 4n) & 7 of the 8 bytes y:x (x's bytes 0-3, y's 4-7)
    const unsigned long long v = ((unsigned long long)y << 32) | x;
    unsigned int r = 0;
    for (int n = 0; n < 4; ++n) r |= (unsigned int)((v >> (8 * ((s >> (4 * n)) & 7u))) & 255u) << (8 * n);
    return r;
}
"""


def elementwise_loop(name, in_params, out_params, operation, scalars, ctype, suffix):
    """A host function running one ElementwiseKernel's operation for i = 0..n-1: each array argument
    is a pointer (its element i bound by reference, as CuPy binds it), a raw one a plain pointer,
    a scalar a value. Integer scalars arrive as long long, as `call` passes every int."""
    params = [p.strip().split() for p in f"{in_params}, {out_params}".split(",")]
    arguments, bindings = [], []
    for words, scalar in zip(params, scalars):
        raw = words[0] == "raw"
        type_name, var = words[-2], words[-1]
        ctype_of = ARGUMENT_TYPES[type_name] or ctype
        if scalar:
            arguments.append(f"{'long long' if type_name in ('int32', 'uint32') else ctype_of} {var}")
        elif raw:
            arguments.append(f"{ctype_of}* {var}")
        else:
            arguments.append(f"{ctype_of}* {var}_array")
            bindings.append(f"{ctype_of}& {var} = {var}_array[i];")
    return f"""
extern "C" void host_{name}_{suffix}({", ".join(arguments)}, long long n) {{
    typedef {ctype} T;
    struct {{ long long n; long long size() const {{ return n; }} }} _ind{{n}};
    for (long long i = 0; i < n; ++i) {{
        {" ".join(bindings)}
        {operation};
    }}
}}
"""


# The step kernels' host drivers: each runs the kernel's whole grid (grid_x by grid_y blocks of one thread).
STEP_DRIVERS = {
    "gather": "const T* X, const int* y, const long long* order, const long long* done, long long first, "
    "long long batches, long long size, long long count, long long n0, T* A0, int* y_batch",
    "output_layer": "T* z, const T* b, const int* y, long long C, long long m, T eps, T eps_over_C, T* db, "
    "double* partials, double* sums, unsigned int* arrived",
    "relu_backward_db": "T* dA, const T* A, long long m, T scale, T* db, double* partials, unsigned int* arrived",
    "sgd": "T* p, T* g, T* v, long long size, const T* rows, long long window, long long* done, long long count, "
    "T momentum, T weight_decay, unsigned int* arrived",
    "adam": "T* p, T* g, T* m, T* v, long long size, const T* rows, long long window, long long* done, "
    "long long count, T beta1, T beta2, T eps, T l2, unsigned int* arrived",
}


# The fused step's update kernels' host drivers: the same, with blocks of NN_REDUCE_GROUPS x 32 threads
# run one after another in each phase (NN_PHASE).
TILE_DRIVERS = {
    "sgd": "const T* partials, long long blocks, long long entries, long long count, T* p, T* g, T* v, "
    "const T* rows, long long window, long long* done, T momentum, T weight_decay, double* sums, unsigned int* arrived",
    "adam": "const T* partials, long long blocks, long long entries, long long count, T* p, T* g, T* m, T* v, "
    "const T* rows, long long window, long long* done, T beta1, T beta2, T eps, T l2, double* sums, "
    "unsigned int* arrived",
}


def kernel_driver(kernel: str, parameters: str, ctype: str, threads: str = "1") -> str:
    """host_KERNEL(parameters, grid_x, grid_y): the kernel nn_KERNEL's whole grid, block after block,
    each of `threads` threads."""
    names = ", ".join(p.split()[-1].lstrip("*") for p in parameters.split(","))
    signature = parameters.replace("T*", f"{ctype}*").replace("T ", f"{ctype} ")
    return f"""
extern "C" void host_{kernel}({signature}, long long grid_x, long long grid_y) {{
    gridDim = {{(unsigned)grid_x, (unsigned)grid_y, 1}}; blockDim = {{{threads}, 1, 1}}; threadIdx = {{0, 0, 0}};
    for (unsigned block_y = 0; block_y < gridDim.y; ++block_y)
        for (unsigned block_x = 0; block_x < gridDim.x; ++block_x) {{
            blockIdx = {{block_x, block_y, 0}};
            nn_{kernel}({names});
        }}
}}
"""


def partials_drivers(ctype: str, suffix: str) -> str:
    """Host drivers of the fused step's partial-sums kernels: every block of the grid in turn, its threads
    one after another in each phase (NN_PHASE), each with its own state, as the card runs them side by side."""
    T = ctype
    text = ""
    for (dtype, hidden, variant), (ahead, _) in FUSED_BUILDS.items():
        if SUFFIXES[dtype] != suffix:
            continue
        A = str(ahead).lower()
        text += f"""
extern "C" void host_{partials_kernel(dtype, hidden, variant)[3:]}(const unsigned char* X, const int* y,
        const long long* order, long long count, const {T}* params, {T}* partials, long long blocks) {{
    static nn_tile_shared<{T}, {hidden}> sh;
    static nn_tile_thread<{T}, {hidden}, {A}> states[NN_THREADS];
    gridDim = {{(unsigned)blocks, 1, 1}}; blockDim = {{NN_THREADS, 1, 1}};
    for (unsigned b = 0; b < gridDim.x; ++b) {{
        blockIdx = {{b, 0, 0}};
        nn_tile_partials<{T}, {hidden}, {A}, nn_tile_thread<{T}, {hidden}, {A}>*>(sh, states, X, y, order, count, params,
                                                                                partials);
    }}
}}
"""
    return text


def host_source() -> str:
    parts = [PRELUDE, CUDA_SOURCE, STEP_SOURCE, FUSED_SOURCE]
    parts.append("""
extern "C" unsigned int host_dropout_draw(unsigned long long k0, unsigned long long k1, unsigned long long t,
                                          unsigned long long e) {
    return nn_dropout_draw(k0, k1, t, e);
}
""")
    for suffix, (ctype, _) in TYPES.items():
        for name, in_params, out_params, operation in KERNELS:
            scalars = [entry is None for entry in KERNEL_LAYOUTS[name][0][:-1]]
            parts.append(elementwise_loop(name, in_params, out_params, operation, scalars, ctype, suffix))
        for name, parameters in STEP_DRIVERS.items():
            parts.append(kernel_driver(f"step_{name}_{suffix}", parameters, ctype))
        for name, parameters in TILE_DRIVERS.items():
            parts.append(kernel_driver(f"tile_{name}_{suffix}", parameters, ctype, "NN_REDUCE_GROUPS * 32"))
        parts.append(partials_drivers(ctype, suffix))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The compiled library (ctypes); skipped with the reason where there is no g++."""
    compiler = shutil.which("g++")
    if compiler is None:
        if os.environ.get("NN_GPU_REQUIRE_GXX") == "1":  # CI: this must run, not skip
            pytest.fail("NN_GPU_REQUIRE_GXX=1 but g++ is not installed")
        pytest.skip("g++ is not installed: the CUDA math cannot be compiled for the host")
    folder = tmp_path_factory.mktemp("cuda_host")
    (folder / "nn_host.cpp").write_text(host_source())
    # No fused multiply-add: the host then rounds each step as NumPy does, so whole ops match exactly.
    command = [compiler, "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-Wall", "-Werror"]
    result = subprocess.run(
        [*command, "-Wno-unused-variable", "-Wno-unknown-pragmas", "nn_host.cpp", "-o", "nn_host.so"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return ctypes.CDLL(str(folder / "nn_host.so"))


def pointer(array):
    assert array.flags.c_contiguous
    return array.ctypes.data_as(ctypes.c_void_p)


def scalar(value, dtype):
    return (ctypes.c_float if dtype == np.float32 else ctypes.c_double)(value)


def call(host, name, suffix, *arguments):
    """host_NAME_SUFFIX(...): arrays by pointer, (value, dtype) pairs as C scalars, ints as long long."""
    converted = []
    for a in arguments:
        if isinstance(a, np.ndarray):
            converted.append(pointer(a))
        elif isinstance(a, ctypes._SimpleCData):
            converted.append(a)
        elif isinstance(a, tuple):
            converted.append(scalar(*a))
        else:
            converted.append(ctypes.c_longlong(a))
    getattr(host, f"host_{name}_{suffix}")(*converted)


def inputs(rng, dtype, shape, scale):
    """Random values at +-scale, with exact zeros, ties and the extremes +-scale among them."""
    Z = (scale * rng.uniform(-1, 1, size=shape)).astype(dtype)
    Z.flat[:: max(1, Z.size // 7)] = 0
    Z.flat[1::11] = scale
    Z.flat[2::13] = -scale
    return Z


DTYPES = pytest.mark.parametrize("suffix", list(TYPES))
SCALES = pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])


TOLERANCE = {"f32": 4 * 2**-23, "f64": 4 * 2**-52}  # exp and log are libm's here, NumPy's own in the op table


@DTYPES
@SCALES
def test_softmax_kernels_match_the_op_table(host, suffix, scale):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(1)
    Z = inputs(rng, dtype, (10, 41), scale)
    y = rng.integers(0, 10, size=41).astype(np.int64)
    A = np.full_like(Z, np.nan)  # every entry must be written
    call(host, "nn_gpu_softmax", suffix, Z, 10, A, Z.shape[1])
    np.testing.assert_allclose(A, ops.softmax(Z.copy()), rtol=TOLERANCE[suffix], atol=TOLERANCE[suffix])
    dZ, loss, correct = Z.copy(), np.full(41, np.nan, dtype), np.full(41, np.nan, dtype)
    call(host, "nn_gpu_softmax_cross_entropy", suffix, y, 10, dZ, loss, correct, 41)
    want_dZ, want_loss, want_correct = ops.softmax_cross_entropy(Z.copy(), y)
    np.testing.assert_allclose(dZ, want_dZ, rtol=TOLERANCE[suffix], atol=TOLERANCE[suffix])  # dZ in [-1, 1]
    np.testing.assert_allclose(loss, want_loss, rtol=TOLERANCE[suffix], atol=TOLERANCE[suffix])
    np.testing.assert_array_equal(correct, want_correct)


@DTYPES
def test_softmax_kernels_are_exact_at_plus_minus_1000(host, suffix):
    # One huge logit, one hugely negative, two tied at +1000: without the max subtracted, exp overflows.
    dtype = TYPES[suffix][1]
    Z = np.zeros((10, 3), dtype=dtype)
    Z[3, 0], Z[5, 1] = 1000, -1000
    Z[[2, 7], 2] = 1000
    A = np.empty_like(Z)
    call(host, "nn_gpu_softmax", suffix, Z, 10, A, 3)
    np.testing.assert_array_equal(A[:, 0], np.eye(10, dtype=dtype)[3])
    assert A[2, 2] == A[7, 2] == 0.5 and A[5, 1] == 0
    dZ, loss, correct = Z.copy(), np.empty(3, dtype), np.empty(3, dtype)
    call(host, "nn_gpu_softmax_cross_entropy", suffix, np.array([3, 5, 7]), 10, dZ, loss, correct, 3)
    assert loss[0] == 0 and loss[1] == pytest.approx(1000 + np.log(9), rel=1e-6)
    assert loss[2] == pytest.approx(np.log(2), rel=1e-6)
    np.testing.assert_array_equal(correct, [1, 0, 0])  # a tie goes to the first index, as argmax does
    assert np.isfinite(dZ).all() and dZ[5, 1] == -1


@DTYPES
@SCALES
def test_bias_relu_kernels_are_the_op_table_exactly(host, suffix, scale):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(0)
    Z, b = inputs(rng, dtype, (9, 37), scale), inputs(rng, dtype, (9, 1), scale)
    broadcast = np.ascontiguousarray(np.broadcast_to(b, Z.shape))
    z = Z.copy()
    call(host, "nn_gpu_bias_relu", suffix, broadcast, z, Z.size)
    np.testing.assert_array_equal(z, ops.bias_relu(Z.copy(), b))
    for p in (0.2, 0.5, 0.9):  # with dropout: the mask drawn in the kernel for step done + 1 = 5
        scale_p = np.asarray(1, dtype) / np.asarray(1 - p, dtype)
        draw = dropout.Draw(dropout.key(7, 1), dropout.threshold(p), scale_p, np.array([4]), 0, Z.shape[1])
        z = Z.copy()
        key0, key1 = (ctypes.c_ulonglong(k) for k in draw.key)
        call(host, "nn_gpu_bias_relu_dropout", suffix, broadcast, draw.done, key0, key1, draw.threshold,
             (scale_p, dtype), z, Z.size)  # fmt: skip
        np.testing.assert_array_equal(z, ops.bias_relu(Z.copy(), b, draw))
        kept = draw.kept(*Z.shape)
        assert np.all(z[~kept] == 0) and kept.mean() == pytest.approx(1 - p, abs=0.1)


@DTYPES
def test_input_dropout_kernel_is_the_op_table_exactly(host, suffix):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(1)
    A = rng.random((30, 784), dtype=np.float64).astype(dtype).T  # n0 x m, the transpose of the samples
    draw = dropout.Draw(dropout.key(3, 0), dropout.threshold(0.2), np.asarray(1.25, dtype), np.array([11]), 0, 30)
    out = np.full((784, 30), np.nan, dtype)  # every entry must be written; i = p m + j, C order of 784 x 30
    key0, key1 = (ctypes.c_ulonglong(k) for k in draw.key)
    call(host, "nn_gpu_dropout", suffix, np.ascontiguousarray(A), draw.done, key0, key1, draw.threshold,
         (1.25, dtype), out, A.size)  # fmt: skip
    np.testing.assert_array_equal(out, ops.dropout(A, draw))


@pytest.mark.parametrize("key", [(0, 1 << 32), (2**64 - 1, (1 << 32) | 3), (123456789, 5)])
def test_philox_draws_are_numpys_philox(host, key):
    host.host_dropout_draw.restype = ctypes.c_uint32
    host.host_dropout_draw.argtypes = [ctypes.c_uint64] * 4
    for t in (1, 2, 1000, 2**40):
        expected = dropout.draws(key, t, 0, 64)  # NumPy: np.random.Philox(counter=[0, t, 0, 0], key=key)
        found = [host.host_dropout_draw(*key, t, e) for e in range(64)]
        np.testing.assert_array_equal(found, expected)
        for first in (5, 13, 4095):  # any stretch of the stream, from any element
            found = [host.host_dropout_draw(*key, t, e) for e in range(first, first + 9)]
            np.testing.assert_array_equal(dropout.draws(key, t, first, 9), found)
    words = np.random.Philox(counter=[0, 7, 0, 0], key=np.array(key, dtype=np.uint64)).random_raw(2)
    assert host.host_dropout_draw(*key, 7, 0) == words[0] & 0xFFFFFFFF  # low half first
    assert host.host_dropout_draw(*key, 7, 3) == words[1] >> 32


def step_grid(host, name, suffix, *arguments, grid=(1, 1)):
    call(host, f"step_{name}", suffix, *arguments, *grid)


@DTYPES
@pytest.mark.parametrize("blocks", [1, 3, 64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_output_layer_kernel_is_the_op_table(host, suffix, blocks, eps):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(2)
    C, m = 7, 101
    WA, b = inputs(rng, dtype, (C, m), 30.0), inputs(rng, dtype, (C, 1), 3.0)
    y = rng.integers(0, C, m).astype(np.int32)
    want_sums, want_db = np.array([1.5, 2.0]), np.empty((C, 1), dtype)
    want = ops.output_layer(WA.copy(), b, y, eps, want_db, want_sums)
    z, db, sums = WA.copy(), np.full((C, 1), np.nan, dtype), np.array([1.5, 2.0])
    partials, arrived = np.full(blocks * (C + 2), np.nan), np.zeros(1, np.uint32)
    step_grid(host, "output_layer", suffix, z, b.ravel().copy(), y, C, m, (eps, dtype), (eps / C, dtype), db,
              partials, sums, arrived, grid=(blocks, 1))  # fmt: skip
    tol = TOLERANCE[suffix]
    np.testing.assert_allclose(z, want, rtol=tol, atol=tol)  # dZ in [-1, 1]
    np.testing.assert_allclose(db, want_db, rtol=0, atol=m * tol)  # a sum of m of them, in another order
    np.testing.assert_allclose(sums, want_sums, rtol=1e-5 if suffix == "f32" else 1e-12)
    assert arrived[0] == 0  # the last block reset the count for the next launch


@DTYPES
@pytest.mark.parametrize(("splits", "scale"), [(1, 1.0), (4, 1.0), (40, 2.0)])
def test_relu_backward_kernel_is_the_op_table(host, suffix, splits, scale):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(3)
    H, m = 6, 300
    dA, A = inputs(rng, dtype, (H, m), 5.0), np.maximum(inputs(rng, dtype, (H, m), 5.0), 0)
    want_db = np.empty((H, 1), dtype)
    want = ops.relu_backward(dA.copy(), A, dtype(scale) if scale != 1 else 1, want_db)
    d, db = dA.copy(), np.full((H, 1), np.nan, dtype)
    partials, arrived = np.full(H * splits, np.nan), np.zeros(1, np.uint32)
    step_grid(host, "relu_backward_db", suffix, d, A, m, (scale, dtype), db, partials, arrived, grid=(splits, H))
    np.testing.assert_array_equal(d, want)
    np.testing.assert_allclose(db, want_db, rtol=0, atol=m * 5 * scale * np.finfo(dtype).eps)
    assert arrived[0] == 0


@DTYPES
@pytest.mark.parametrize("blocks", [1, 5])
def test_gather_kernel_takes_each_steps_batch_of_the_epochs_shuffle(host, suffix, blocks):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(4)
    m, n0, size, batches = 50, 12, 16, 4  # batches of 16, 16, 16 and 2
    samples = rng.standard_normal((m, n0)).astype(dtype)
    y = rng.integers(0, 10, m).astype(np.int32)
    order = rng.permutation(m)
    for first, done in [(0, d) for d in range(9)] + [(5, 5), (5, 8), (5, 9), (3, 12)]:
        count = min(size, m - (done - first) % batches * size)
        want_X, want_y = ops.gather(samples.T, y, order, np.array([done]), first, batches, size, count)
        rows = order[(done - first) % batches * size :][:count]  # the batch's rows, written out
        np.testing.assert_array_equal(want_y, y[rows])
        A0, y_batch = np.full((count, n0), np.nan, dtype), np.full(count, -1, np.int32)
        step_grid(host, "gather", suffix, samples, y, order, np.array([done]), first, batches, size, count, n0, A0,
                  y_batch, grid=(blocks, 1))  # fmt: skip
        np.testing.assert_array_equal(A0.T, want_X)
        np.testing.assert_array_equal(y_batch, want_y)


@DTYPES
@pytest.mark.parametrize("blocks", [1, 7])
def test_sgd_step_kernel_is_the_op_table_exactly_over_several_steps(host, suffix, blocks):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(5)
    p, v = rng.standard_normal(300).astype(dtype), np.zeros(300, dtype)
    want_p, want_v = p.copy(), v.copy()
    rows = np.array([[0.1], [0.05], [0.5]], dtype)  # a window of 3 steps' learning rates
    done, want_done, arrived = np.array([4]), np.array([4]), np.zeros(1, np.uint32)
    for count, momentum, weight_decay in [(1, 0.9, 1e-3), (37, 0.9, 1e-3), (128, 0.0, 0.0), (5, 0.5, 0.1)]:
        g = rng.standard_normal(300).astype(dtype)
        want_g = g.copy()
        ops.sgd_update(want_p, want_g, want_v, rows, want_done, count, momentum, weight_decay)
        step_grid(host, "sgd", suffix, p, g, v, 300, rows, 3, done, count, (momentum, dtype), (weight_decay, dtype),
                  arrived, grid=(blocks, 1))  # fmt: skip
        for found, expected in ((p, want_p), (v, want_v), (g, want_g), (done, want_done)):
            np.testing.assert_array_equal(found, expected)
    assert done[0] == 8 and arrived[0] == 0


@DTYPES
@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_adam_step_kernel_is_the_op_table_exactly_over_several_steps(host, suffix, decoupled):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(6)
    p, m, v = rng.standard_normal(300).astype(dtype), np.zeros(300, dtype), np.zeros(300, dtype)
    want = [p.copy(), m.copy(), v.copy()]
    lrs = [1e-3, 1e-3, 5e-4, 1e-2]
    rows = np.array(
        [
            (lr / (1 - 0.9**t), np.sqrt(1 - 0.999**t), 1 - lr * 0.01 if decoupled else 1.0)
            for t, lr in enumerate(lrs, 1)
        ],
        dtype,
    )
    l2 = 0.0 if decoupled else 0.01
    done, want_done, arrived = np.array([0]), np.array([0]), np.zeros(1, np.uint32)
    for count in (1, 64, 3, 200):
        g = rng.standard_normal(300).astype(dtype)
        want_g = g.copy()
        ops.adam_update(want[0], want_g, want[1], want[2], rows, want_done, count, 0.9, 0.999, 1e-8, l2)
        step_grid(host, "adam", suffix, p, g, m, v, 300, rows, 4, done, count, (0.9, dtype), (0.999, dtype),
                  (1e-8, dtype), (l2, dtype), arrived, grid=(3, 1))  # fmt: skip
        for found, expected in zip((p, m, v, g, done), (*want, want_g, want_done)):
            np.testing.assert_array_equal(found, expected)
    assert done[0] == 4


def tile_problem(suffix, hidden, count, permuted, seed=5):
    """A 784-H-10 network with random biases, uint8 images with zero pieces and zero pixels, labels, and
    the batch: all 150 images, or `count` of them in a shuffled order."""
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(seed)
    arch = Architecture((hidden,), dtype.__name__)
    network = Network(arch, cpu_device(), init_parameters(arch, "he", rng))
    for b in network.b:
        b += rng.uniform(-0.2, 0.2, size=b.shape).astype(dtype)
    images = rng.integers(0, 256, size=(150, 784)).astype(np.uint8)
    images[images < 120] = 0  # zero pixels, as around a digit
    images[:, :100] = 0  # and whole zero pieces of 16 pixels, skipped by the kernel
    labels = rng.integers(0, 10, size=150).astype(np.int32)
    order = rng.permutation(150)[:count].astype(np.int64) if permuted else None
    return network, images, labels, order


def tile_partials(host, network, images, labels, order, count, blocks, variant=""):
    """The partial-sums kernel's rows (blocks x entries), every entry poisoned first."""
    arch = network.arch
    partials = np.full((blocks, n_entries(arch.hidden[0])), np.nan, arch.dtype)
    order_pointer = None if order is None else pointer(order)
    getattr(host, f"host_{partials_kernel(arch.dtype, arch.hidden[0], variant)[3:]}")(
        pointer(images), pointer(labels), order_pointer, ctypes.c_longlong(count),
        pointer(np.ascontiguousarray(network.flat)), pointer(partials), ctypes.c_longlong(blocks),
    )  # fmt: skip
    return partials


def ordered_total(partials):
    """The update kernel's sum of the rows: groups g = 0..7 of rows g, g + 8, ... in order, then the groups in order."""
    groups = []
    for g in range(FUSED_REDUCE_GROUPS):
        total = np.zeros(partials.shape[1], partials.dtype)
        for row in partials[g::FUSED_REDUCE_GROUPS]:
            total = total + row
        groups.append(total)
    total = groups[0]
    for group in groups[1:]:
        total = total + group
    return total


def update_grid(count, hidden):
    """The update kernel's grid as nn_gpu/fused.py launches it: (blocks, 1)."""
    return fused_launch(count, hidden, sms=1)["reduce"][0], 1


BUILDS = pytest.mark.parametrize(
    ("suffix", "hidden", "variant"), [(SUFFIXES[dtype], hidden, variant) for dtype, hidden, variant in FUSED_BUILDS]
)


@BUILDS
@pytest.mark.parametrize(
    ("count", "blocks", "permuted"), [(150, 1, False), (150, 3, False), (37, 2, True), (1, 1, True)]
)
def test_fused_partial_sums_add_up_to_the_networks_gradient(host, suffix, hidden, variant, count, blocks, permuted):
    dtype = TYPES[suffix][1]
    network, images, labels, order = tile_problem(suffix, hidden, count, permuted)
    partials = tile_partials(host, network, images, labels, order, count, blocks, variant)
    assert np.isfinite(partials).all()  # every entry of every block's row written
    rows = np.arange(count) if order is None else order
    reference = Network(
        Architecture((hidden,), "float64"), cpu_device(), [p.astype(np.float64) for p in network.params]
    )
    Z2 = reference.forward(images[rows].T / 255.0, keep=True)["Z2"]
    loss, correct = reference.gradients(images[rows].T / 255.0, labels[rows].astype(np.int64))
    total = partials.astype(np.float64).sum(axis=0)
    tol = 1e-10 if suffix == "f64" else 2e-5
    scale = float(np.abs(reference.flat_grad).max())
    np.testing.assert_allclose(total[:-2] / count, reference.flat_grad, rtol=tol, atol=tol * scale)
    assert total[-2] == pytest.approx(float(loss), rel=tol)
    top = np.sort(Z2, axis=0)[-2:]
    ties = int(np.sum(top[1] - top[0] <= 1e-5 * np.maximum(1, np.abs(top[1])))) if suffix == "f32" else 0
    assert abs(total[-1] - float(correct)) <= ties
    assert partials.dtype == dtype


@pytest.mark.parametrize("suffix", list(TYPES))
def test_fused_blocks_without_a_tile_write_zeros(host, suffix):
    network, images, labels, order = tile_problem(suffix, 10, 40, permuted=True)  # 2 tiles, 5 blocks
    partials = tile_partials(host, network, images, labels, order, 40, 5)
    assert np.isfinite(partials).all() and (partials[2:] == 0).all() and (partials[:2] != 0).any()
    np.testing.assert_array_equal(partials[0], tile_partials(host, network, images, labels, order[:32], 32, 1)[0])


@pytest.mark.parametrize("suffix", list(TYPES))
@pytest.mark.parametrize("blocks", [1, 9, 20])
def test_fused_update_adds_the_rows_in_a_fixed_order_then_is_the_op_tables_sgd(host, suffix, blocks):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(7)
    entries, count = n_entries(10), 333
    partials = rng.standard_normal((blocks, entries)).astype(dtype)
    total = ordered_total(partials)
    p, v = rng.standard_normal(entries - 2).astype(dtype), rng.standard_normal(entries - 2).astype(dtype)
    g, sums = np.full(entries - 2, np.nan, dtype), np.array([1.5, 2.0])
    rows = np.array([[0.1], [0.05], [0.5]], dtype)
    done, arrived = np.array([4]), np.zeros(1, np.uint32)
    want_p, want_v, want_g, want_done = p.copy(), v.copy(), total[:-2].copy(), np.array([4])
    ops.sgd_update(want_p, want_g, want_v, rows, want_done, count, 0.9, 1e-3)
    call(host, "tile_sgd", suffix, partials, blocks, entries, count, p, g, v, rows, 3, done, (0.9, dtype),
         (1e-3, dtype), sums, arrived, *update_grid(count, 10))  # fmt: skip
    for found, expected in ((p, want_p), (v, want_v), (g, want_g), (done, want_done)):
        np.testing.assert_array_equal(found, expected)  # the mean gradient is left in g
    np.testing.assert_array_equal(sums, [1.5 + float(total[-2]), 2.0 + float(total[-1])])
    assert done[0] == 5 and arrived[0] == 0


@pytest.mark.parametrize("suffix", list(TYPES))
@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_fused_update_with_adam_is_the_op_tables_adam(host, suffix, decoupled):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(8)
    entries, count, blocks = n_entries(16), 70, 11
    p, m, v = (rng.standard_normal(entries - 2).astype(dtype) for _ in range(3))
    v = np.abs(v)
    rows = np.array(
        [(1e-3 / (1 - 0.9**t), np.sqrt(1 - 0.999**t), 1 - 1e-5 if decoupled else 1.0) for t in (1, 2)], dtype
    )
    l2 = 0.0 if decoupled else 0.01
    done, want_done, arrived, sums = np.array([0]), np.array([0]), np.zeros(1, np.uint32), np.zeros(2)
    want = [p.copy(), m.copy(), v.copy()]
    for _ in range(2):
        partials = rng.standard_normal((blocks, entries)).astype(dtype)
        want_g = ordered_total(partials)[:-2].copy()
        ops.adam_update(want[0], want_g, want[1], want[2], rows, want_done, count, 0.9, 0.999, 1e-8, l2)
        g = np.full(entries - 2, np.nan, dtype)
        call(host, "tile_adam", suffix, partials, blocks, entries, count, p, g, m, v, rows, 2, done, (0.9, dtype),
             (0.999, dtype), (1e-8, dtype), (l2, dtype), sums, arrived, *update_grid(count, 16))  # fmt: skip
        for found, expected in zip((p, m, v, g, done), (*want, want_g, want_done)):
            np.testing.assert_array_equal(found, expected)
    assert done[0] == 2


@pytest.mark.parametrize("suffix", list(TYPES))
def test_fused_steps_train_as_the_hand_loop_does(host, suffix):
    # Five steps of the two kernels (mini-batches of 37 in a shuffled order) against the network's own
    # gradients and SGD with momentum, step by step.
    dtype = TYPES[suffix][1]
    network, images, labels, _ = tile_problem(suffix, 16, 150, permuted=False, seed=9)
    hand = Network(network.arch, cpu_device(), [q.copy() for q in network.params])
    sgd = SGD(hand, momentum=0.9, weight_decay=1e-3)
    p, v, g = np.ascontiguousarray(network.flat), np.zeros_like(network.flat), np.empty_like(network.flat)
    entries, blocks = n_entries(16), 2
    rows, done, arrived, sums = np.array([[0.05]], dtype), np.array([0]), np.zeros(1, np.uint32), np.zeros(2)
    rng = np.random.default_rng(10)
    for _ in range(5):
        order = rng.permutation(150)[:37].astype(np.int64)
        network.flat[...] = p
        partials = tile_partials(host, network, images, labels, order, 37, blocks)
        call(host, "tile_sgd", suffix, partials, blocks, entries, 37, p, g, v, rows, 1, done, (0.9, dtype),
             (1e-3, dtype), sums, arrived, *update_grid(37, 16))  # fmt: skip
        hand.gradients((images[order].T / dtype(255)).astype(dtype), labels[order].astype(np.int64))
        sgd.step(0.05)
    tol = {"rtol": 1e-4, "atol": 1e-6} if suffix == "f32" else {"rtol": 1e-10, "atol": 1e-13}
    np.testing.assert_allclose(p, hand.flat, **tol)
    assert done[0] == 5
