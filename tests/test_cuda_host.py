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
from nn_gpu.fused_source import FUSED_SOURCE
from nn_gpu.model import Network
from nn_gpu.ops import REFERENCE_OPS as ops

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
template <typename T> T __shfl_xor_sync(unsigned, T value, int) { return value; }  // compiled, never run
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


def step_driver(name: str, parameters: str, ctype: str, suffix: str) -> str:
    names = ", ".join(p.split()[-1].lstrip("*") for p in parameters.split(","))
    signature = parameters.replace("T*", f"{ctype}*").replace("T ", f"{ctype} ")
    return f"""
extern "C" void host_step_{name}_{suffix}({signature}, long long grid_x, long long grid_y) {{
    gridDim = {{(unsigned)grid_x, (unsigned)grid_y, 1}}; blockDim = {{1, 1, 1}}; threadIdx = {{0, 0, 0}};
    for (unsigned block_y = 0; block_y < gridDim.y; ++block_y)
        for (unsigned block_x = 0; block_x < gridDim.x; ++block_x) {{
            blockIdx = {{block_x, block_y, 0}};
            nn_step_{name}_{suffix}({names});
        }}
}}
"""


def host_source() -> str:
    parts = [PRELUDE, CUDA_SOURCE, FUSED_SOURCE, STEP_SOURCE]
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
            parts.append(step_driver(name, parameters, ctype, suffix))
        parts.append(f"""
extern "C" void host_fused_update_{suffix}({ctype}* p, {ctype}* g, {ctype}* v, long long size, const {ctype}* lr,
                                         {ctype} inverse_count, {ctype} momentum, {ctype} weight_decay,
                                         long long blocks, long long threads) {{
    gridDim = {{(unsigned)blocks, 1, 1}}; blockDim = {{(unsigned)threads, 1, 1}};
    for (unsigned b = 0; b < gridDim.x; ++b)
        for (unsigned t = 0; t < blockDim.x; ++t) {{
            blockIdx = {{b, 0, 0}}; threadIdx = {{t, 0, 0}};
            nn_fused_update<{ctype}>(p, g, v, size, lr, inverse_count, momentum, weight_decay);
        }}
}}
extern "C" void host_fused_weight_gradient_{suffix}(const unsigned char* X, const long long* rows, long long count,
                                                  long long H, long long chunk, long long grid_y,
                                                  const {ctype}* dZ1, {ctype}* grads) {{
    gridDim = {{NN_PIXELS, (unsigned)grid_y, 1}}; blockDim = {{1, 1, 1}}; threadIdx = {{0, 0, 0}};
    for (unsigned y = 0; y < gridDim.y; ++y)
        for (unsigned x = 0; x < NN_PIXELS; ++x) {{
            blockIdx = {{x, y, 0}};
            nn_fused_weight_gradient<{ctype}>(X, rows, count, H, chunk, dZ1, grads);
        }}
}}
extern "C" void host_fused_sample_{suffix}(const {ctype}* w1x, const {ctype}* b1, const {ctype}* W2, const {ctype}* b2,
                                         long long H, long long y, {ctype}* a1, {ctype}* z2, {ctype}* dz1, {ctype}* loss,
                                         {ctype}* correct) {{
    // One sample through the fused kernel's per-sample steps, in its order, from W1 x (w1x).
    for (int h = 0; h < H; ++h) a1[h] = nn_hidden_unit<{ctype}>(w1x[h], b1[h]);
    nn_output_layer<{ctype}>(W2, b2, a1, H, z2);
    nn_softmax_cross_entropy_column<{ctype}>(z2, y, NN_CLASSES, 1, loss, correct);
    for (int h = 0; h < H; ++h) dz1[h] = nn_hidden_delta<{ctype}>(W2, z2, a1[h], H, h);
}}
""")
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


@DTYPES
@pytest.mark.parametrize(("blocks", "threads"), [(1, 1), (3, 32), (64, 256)])
def test_fused_update_kernel_is_the_mean_gradient_then_the_op_tables_update(host, suffix, blocks, threads):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(3)
    size, count = 1000, 37
    p, v, g = (rng.standard_normal(size).astype(dtype) for _ in range(3))
    want_p, want_v, want_g = p.copy(), v.copy(), g * dtype(1 / count)
    ops.sgd_update(want_p, want_g.copy(), want_v, np.array([[0.05]], dtype), np.array([0]), 1, 0.9, 1e-3)
    lr = np.array([0.05], dtype)
    call(
        host,
        "fused_update",
        suffix,
        p,
        g,
        v,
        size,
        lr,
        (1 / count, dtype),
        (0.9, dtype),
        (1e-3, dtype),
        blocks,
        threads,
    )
    np.testing.assert_array_equal(g, want_g)  # the mean gradient is left in the buffer
    np.testing.assert_array_equal(v, want_v)
    np.testing.assert_array_equal(p, want_p)


@DTYPES
@pytest.mark.parametrize(("count", "chunk", "grid_y"), [(1, 1, 1), (50, 7, 3), (130, 128, 1), (300, 16, 4)])
def test_fused_weight_gradient_kernel_adds_dZ1_X_transposed_over_255(host, suffix, count, chunk, grid_y):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(4)
    H = 12
    X = rng.integers(0, 256, size=(400, 784)).astype(np.uint8)
    X[:, ::3] = 0  # the kernel skips zero pixels
    rows = rng.choice(400, size=count, replace=False).astype(np.int64)
    dZ1 = rng.standard_normal((H, count)).astype(dtype)
    grads = np.full(H * 784 + 5, 0.5, dtype)  # dW1 first in the flat layout; the kernel adds into it
    call(host, "fused_weight_gradient", suffix, X, rows, count, H, chunk, grid_y, dZ1, grads)
    expected = 0.5 + (dZ1.astype(np.float64) @ X[rows].astype(np.float64) / 255).ravel()
    bound = 8 * count * np.finfo(dtype).eps  # a sum of count terms of size about 1, in another order
    np.testing.assert_allclose(grads[: H * 784], expected, rtol=0, atol=bound)
    assert (grads[H * 784 :] == 0.5).all()  # nothing past dW1 is touched


@DTYPES
def test_fused_per_sample_math_is_the_networks_forward_and_backward(host, suffix):
    dtype = TYPES[suffix][1]
    rng = np.random.default_rng(5)
    arch = Architecture((13,), "float32" if suffix == "f32" else "float64")
    network = Network(arch, cpu_device(), init_parameters(arch, "he", rng))
    for b in network.b:
        b += rng.uniform(-0.2, 0.2, size=b.shape).astype(dtype)
    images = rng.integers(0, 256, size=(20, 784)).astype(np.uint8)
    y = rng.integers(0, 10, size=20)
    W1, b1, W2, b2 = (np.ascontiguousarray(p) for p in network.params)
    cache = network.forward(images.T, keep=True)
    Z2, A1 = cache["Z2"], cache["A1"]
    A1, Z2 = A1.copy(), Z2.copy()
    dZ2, loss, correct = ops.softmax_cross_entropy(Z2.copy(), y)
    dZ1 = ops.relu_backward(W2.T @ dZ2, A1, 1, np.empty((13, 1), dtype))
    tol = {"rtol": 1e-4, "atol": 1e-5} if suffix == "f32" else {"rtol": 1e-10, "atol": 1e-12}
    for s in range(20):
        w1x = (W1.astype(np.float64) @ images[s].astype(np.float64)).astype(dtype)  # the warp's sum, in float64
        a1, z2, dz1 = np.empty(13, dtype), np.empty(10, dtype), np.empty(13, dtype)
        out_loss, out_correct = np.empty(1, dtype), np.empty(1, dtype)
        call(
            host,
            "fused_sample",
            suffix,
            w1x,
            b1.ravel(),
            W2,
            b2.ravel(),
            13,
            int(y[s]),
            a1,
            z2,
            dz1,
            out_loss,
            out_correct,
        )
        np.testing.assert_allclose(a1, A1[:, s], **tol)
        np.testing.assert_allclose(z2, dZ2[:, s], **tol)  # Z2 became dZ2 in place, as in the kernel
        np.testing.assert_allclose(dz1, dZ1[:, s], **tol)
        np.testing.assert_allclose(out_loss, loss[s], **tol)
        assert out_correct[0] == correct[s]
