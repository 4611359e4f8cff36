"""The GPU modules import and build their kernel objects where CuPy is installed, even with no GPU.

Compiling and running the kernels needs a card (tests/test_gpu.py); this catches the Python side of
nn_gpu/kernels.py and nn_gpu/fused.py in CI, which installs CuPy for the NVRTC compile test.
"""

import os

import pytest

from nn_gpu.cuda_source import KERNELS
from nn_gpu.ops import REFERENCE_OPS, Ops


def cupy_or_skip():
    try:
        import cupy
    except ImportError:
        if os.environ.get("NN_GPU_REQUIRE_NVRTC") == "1":  # CI installs CuPy: this must run there
            raise
        pytest.skip("CuPy is not installed")
    return cupy


def test_kernel_op_table_matches_the_reference_table():
    cupy = cupy_or_skip()
    from nn_gpu import kernels

    assert isinstance(kernels.KERNEL_OPS, Ops) and len(kernels.KERNEL_OPS) == len(REFERENCE_OPS)
    built = [
        kernels._bias_relu,
        kernels._relu_backward,
        kernels._softmax,
        kernels._softmax_cross_entropy,
        kernels._sgd_update,
    ]
    assert [k.name for k in built] == [name for name, *_ in KERNELS]
    assert all(isinstance(k, cupy.ElementwiseKernel) for k in built)
    for field in Ops._fields:  # the same names, the same order, each a kernel wrapper
        assert getattr(kernels.KERNEL_OPS, field).__name__ == getattr(REFERENCE_OPS, field).__name__


def test_fused_module_imports():
    cupy = cupy_or_skip()
    from nn_gpu import fused

    assert isinstance(fused._module, cupy.RawModule)
