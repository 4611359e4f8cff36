"""W A on the GPU through cuBLAS, called directly, so that products can be captured in a CUDA graph.

CuPy refuses any cuBLAS call while a stream is being captured (its setStream raises "calling cuBLAS
API during stream capture is currently unsupported"), although cuBLAS itself supports capture. So
nn_gpu keeps a cuBLAS handle of its own, from the same libcublas CuPy loaded, with a workspace of
its own (cuBLAS' advice for graphs: no allocation inside a capture), and calls cublasSgemm_v2 and
cublasDgemm_v2 through ctypes on CuPy's current stream. Eager steps and captured ones use this one
handle, so a graph replays the eager step's products, bit for bit.

Row-major arrays are column-major transposes: C = A B (n x m, C-contiguous) is computed as
C^T = B^T A^T, and a transposed operand (F-contiguous, such as A0 = X^T) is passed with op T instead
of being copied. `gemm_arguments` works this out; tests/test_cublas.py checks it with a NumPy
emulation of column-major GEMM for every layout, since no card runs in CI.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

OP_N, OP_T = 0, 1  # cublasOperation_t
WORKSPACE_BYTES = 32 * 2**20  # cuBLAS' recommendation for Hopper (4 MiB suffices for earlier cards)


class CublasError(RuntimeError):
    """A cuBLAS call failed, or libcublas could not be found; the message says which."""


def gemm_arguments(A, B) -> tuple[int, int, int, int, int, int, int, object, object]:
    """(transa, transb, m, n, k, lda, ldb, first, second) for cuBLAS to compute C = A B into a
    C-contiguous n x m C, for A n x k and B k x m, each C-contiguous or F-contiguous.

    cuBLAS sees the row-major C as its transpose, column-major m x n: C^T = B^T A^T, so B comes first.
    A C-contiguous row-major array X (r x c) is column-major X^T (c x r), leading dimension c: op N
    gives X^T. An F-contiguous one is column-major X itself (r x c), leading dimension r: op T gives X^T.
    """
    (n, k), (k2, m) = A.shape, B.shape
    if k != k2:
        raise ValueError(f"product of {n} x {k} and {k2} x {m}: the inner sizes differ")

    def operand(X):
        rows, columns = X.shape
        if X.flags.c_contiguous:
            return OP_N, max(1, columns)
        if X.flags.f_contiguous:
            return OP_T, max(1, rows)
        raise ValueError("operand neither C- nor F-contiguous")

    transa, lda = operand(B)
    transb, ldb = operand(A)
    return transa, transb, m, n, k, lda, ldb, B, A


def _library_path() -> str:
    """The libcublas CuPy uses: loaded with its cuBLAS module, found among this process's mappings
    (Linux), else through cuda-pathfinder, which CuPy finds its libraries with."""
    import cupy_backends.cuda.libs.cublas  # noqa: F401  (loads libcublas into the process)

    maps = Path("/proc/self/maps")
    if maps.exists():
        for line in maps.read_text().splitlines():
            fields = line.split(maxsplit=5)  # address, permissions, offset, device, inode, path
            if len(fields) == 6 and Path(fields[5]).name.startswith("libcublas.so"):
                return fields[5]
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib

        return load_nvidia_dynamic_lib("cublas").abs_path
    except Exception as error:
        raise CublasError(f"libcublas not found: {error}") from None


class Cublas:
    """nn_gpu's cuBLAS handle on one card, and the products made with it."""

    def __init__(self, cupy, library: ctypes.CDLL):
        self.cupy, self.lib = cupy, library
        pointer, handle = ctypes.c_void_p, ctypes.c_void_p
        for name, real in (("cublasSgemm_v2", ctypes.c_float), ("cublasDgemm_v2", ctypes.c_double)):
            function = getattr(library, name)
            function.argtypes = [handle, *[ctypes.c_int] * 5, ctypes.POINTER(real), pointer, ctypes.c_int]
            function.argtypes += [pointer, ctypes.c_int, ctypes.POINTER(real), pointer, ctypes.c_int]
            function.restype = ctypes.c_int
        library.cublasCreate_v2.argtypes = [ctypes.POINTER(handle)]
        library.cublasSetStream_v2.argtypes = [handle, pointer]
        library.cublasSetWorkspace_v2.argtypes = [handle, pointer, ctypes.c_size_t]
        self.handle = handle()
        self._check("cublasCreate_v2", library.cublasCreate_v2(ctypes.byref(self.handle)))
        self.workspace = cupy.cuda.alloc(WORKSPACE_BYTES)  # held as long as the handle
        self._check(
            "cublasSetWorkspace_v2",
            library.cublasSetWorkspace_v2(self.handle, self.workspace.ptr, WORKSPACE_BYTES),
        )

    @staticmethod
    def _check(name: str, status: int) -> None:
        if status != 0:
            raise CublasError(f"{name} failed with cuBLAS status {status}")

    def product(self, A, B, out=None):
        """A B (n x m) for CuPy arrays A (n x k) and B (k x m) of float32 or float64, into out (C-contiguous)
        when given, else into a new C-contiguous array; on the current stream, capturable."""
        cupy = self.cupy
        if A.dtype != B.dtype or A.dtype not in (np.float32, np.float64):
            raise ValueError(f"product of {A.dtype} and {B.dtype}: nn_gpu multiplies float32 or float64 alike")
        A, B = (X if X.flags.c_contiguous or X.flags.f_contiguous else cupy.ascontiguousarray(X) for X in (A, B))
        transa, transb, m, n, k, lda, ldb, first, second = gemm_arguments(A, B)
        C = out if out is not None and out.flags.c_contiguous else cupy.empty((n, m), dtype=A.dtype)
        if C.shape != (n, m) or C.dtype != A.dtype:
            raise ValueError(f"out is {C.dtype} {C.shape}; the product is {A.dtype} {(n, m)}")
        real, name = (
            (ctypes.c_float, "cublasSgemm_v2") if A.dtype == np.float32 else (ctypes.c_double, "cublasDgemm_v2")
        )
        alpha, beta = real(1), real(0)
        self._check("cublasSetStream_v2", self.lib.cublasSetStream_v2(self.handle, cupy.cuda.get_current_stream().ptr))
        status = getattr(self.lib, name)(
            self.handle, transa, transb, m, n, k, ctypes.byref(alpha), first.data.ptr, lda,
            second.data.ptr, ldb, ctypes.byref(beta), C.data.ptr, max(1, m),
        )  # fmt: skip
        self._check(name, status)
        if out is not None and C is not out:
            out[...] = C
            return out
        return C


_handles: dict[int, Cublas] = {}
_lock = threading.Lock()


def handle() -> Cublas:
    """nn_gpu's cuBLAS handle for CuPy's current card, made on first use."""
    import cupy

    card = cupy.cuda.runtime.getDevice()
    with _lock:
        if card not in _handles:
            _handles[card] = Cublas(cupy, ctypes.CDLL(_library_path()))
        return _handles[card]


def product(A, B, out=None):
    """A B on the GPU through nn_gpu's cuBLAS handle (Cublas.product)."""
    return handle().product(A, B, out)
