"""The GPU modules import and build their kernel objects where CuPy is installed, even with no GPU.

Compiling and running the kernels needs a card (tests/test_gpu.py); this catches the Python side of
nn_gpu/kernels.py and nn_gpu/fused.py in CI, which installs CuPy for the NVRTC compile test.
"""

import re

from helpers import ROOT, cupy_or_skip

from nn_gpu.cuda_source import KERNELS
from nn_gpu.ops import REFERENCE_OPS, Ops


def test_kernel_op_table_matches_the_reference_table():
    cupy = cupy_or_skip()
    from nn_gpu import kernels

    assert isinstance(kernels.KERNEL_OPS, Ops) and len(kernels.KERNEL_OPS) == len(REFERENCE_OPS)
    built = list(kernels.ELEMENTWISE_KERNELS)
    assert built == [
        kernels._bias_relu,
        kernels._bias_relu_dropout,
        kernels._dropout,
        kernels._softmax,
        kernels._softmax_cross_entropy,
    ]
    assert [k.name for k in built] == [name for name, *_ in KERNELS]
    assert all(isinstance(k, cupy.ElementwiseKernel) for k in built)
    assert isinstance(kernels._step_module, cupy.RawModule)
    for field in Ops._fields:  # the same names, the same order, each a kernel wrapper
        assert getattr(kernels.KERNEL_OPS, field).__name__ == getattr(REFERENCE_OPS, field).__name__


def test_fused_module_imports():
    cupy = cupy_or_skip()
    from nn_gpu import fused

    assert isinstance(fused._module, cupy.RawModule)


def test_gpu_check_runs_every_gpu_test_in_some_stage():
    # scripts/gpu_check.sh names the GPU tests stage by stage; a test left out would never run on a card.
    script = (ROOT / "scripts" / "gpu_check.sh").read_text()
    staged = re.findall(r'"\$gpu_tests::(\w+)"', script)
    defined = re.findall(r"^def (test_\w+)", (ROOT / "tests" / "test_gpu.py").read_text(), re.MULTILINE)
    assert sorted(staged) == sorted(defined)
    assert '"${pytest[@]}" tests/test_cuda_source.py' in script
