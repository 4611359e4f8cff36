"""nn_gpu's cuBLAS products without a card: the arguments it hands cublasSgemm, run through a NumPy
emulation of column-major GEMM, must give A B for every layout the network multiplies."""

import numpy as np
import pytest
from helpers import cupy_or_skip

from nn_gpu.cublas import OP_N, OP_T, gemm_arguments


def column_major(buffer: np.ndarray, rows: int, columns: int, ld: int) -> np.ndarray:
    """The rows x columns column-major matrix cuBLAS sees at `buffer` with leading dimension ld."""
    flat = np.ravel(buffer, order="K")  # the memory, in order
    assert ld >= max(1, rows) and (columns - 1) * ld + rows <= flat.size
    return np.lib.stride_tricks.as_strided(flat, (rows, columns), (flat.itemsize, ld * flat.itemsize))


def emulated_gemm(A, B) -> np.ndarray:
    """C = A B as cuBLAS computes it from gemm_arguments: C (m x n, column-major, ldc = m) = op(first) op(second),
    read back as the row-major n x m result."""
    transa, transb, m, n, k, lda, ldb, first, second = gemm_arguments(A, B)
    a = column_major(first, *((m, k) if transa == OP_N else (k, m)), lda)
    b = column_major(second, *((k, n) if transb == OP_N else (n, k)), ldb)
    c = (a if transa == OP_N else a.T) @ (b if transb == OP_N else b.T)  # m x n, column-major
    out = np.empty(n * m)
    column_major(out, m, n, max(1, m))[...] = c
    return out.reshape(n, m)  # the same memory, row-major n x m


def layouts(rng, rows, columns):
    """The matrix in both layouts the network hands over: C-contiguous, and as the transpose of a
    C-contiguous array (F-contiguous, as A0 = X^T and W^T)."""
    M = rng.standard_normal((rows, columns))
    return {"C": np.ascontiguousarray(M), "F": np.asfortranarray(M)}


@pytest.mark.parametrize(("n", "k", "m"), [(10, 784, 128), (1, 5, 7), (7, 1, 3), (4, 6, 1), (1, 1, 1)])
def test_every_layout_gives_a_times_b(n, k, m):
    rng = np.random.default_rng(0)
    for name_a, A in layouts(rng, n, k).items():
        for name_b, B in layouts(rng, k, m).items():
            np.testing.assert_allclose(emulated_gemm(A, B), A @ B, rtol=1e-12, err_msg=f"A {name_a}, B {name_b}")


def test_the_networks_products_pass_transposes_as_they_are():
    rng = np.random.default_rng(1)
    W, X = rng.standard_normal((10, 784)), np.ascontiguousarray(rng.standard_normal((300, 784))).T  # X: 784 x m, F
    dZ = rng.standard_normal((10, 300))
    transa, transb, *_ = gemm_arguments(W, X)  # Z1 = W1 A0: A0 is the samples' transpose, taken with op T
    assert (transa, transb) == (OP_T, OP_N)
    transa, transb, *_ = gemm_arguments(dZ, X.T)  # dW1 = dZ1 A0^T: A0^T is the C-contiguous samples
    assert (transa, transb) == (OP_N, OP_N)
    transa, transb, *_ = gemm_arguments(W.T, dZ)  # dA = W^T dZ
    assert (transa, transb) == (OP_N, OP_T)


def test_mismatched_or_strided_operands_are_refused():
    with pytest.raises(ValueError, match="inner sizes differ"):
        gemm_arguments(np.zeros((3, 4)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="neither C- nor F-contiguous"):
        gemm_arguments(np.zeros((3, 8))[:, ::2], np.zeros((4, 2)))


def test_the_binding_imports_without_a_card():
    cupy_or_skip()
    from nn_gpu import cublas, kernels

    assert kernels.KERNEL_OPS.product is cublas.product
