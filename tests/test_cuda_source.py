"""Compile the CUDA source of every kernel with NVRTC: CUDA errors fail CI, which has no GPU.

CuPy's own compile path needs a driver; NVRTC itself does not. Each ElementwiseKernel is compiled
for float and double in the shape of the code CuPy generates for it (CuPy's carray.cuh, `typedef`s
for the type placeholders, CArray parameters, the CUPY_FOR loop over `_ind`), together with
CUDA_SOURCE; the fused step's RawModule source is compiled as it is. Set NN_GPU_REQUIRE_NVRTC=1
(CI does) to fail instead of skip when NVRTC is missing.
"""

import os
from pathlib import Path

import pytest

from nn_gpu.cuda_source import CUDA_SOURCE, FUSED_SOURCE, KERNELS


def nvrtc_module():
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as error:  # no CuPy, or no NVRTC library (pip install -e '.[nvrtc]')
        if os.environ.get("NN_GPU_REQUIRE_NVRTC") == "1":
            raise
        pytest.skip(f"NVRTC not available ({type(error).__name__}: {error}); pip install -e '.[nvrtc]'")
    return nvrtc


def compile_cuda(source: str) -> str:
    """PTX for `source` (CuPy's headers on the include path), or AssertionError carrying NVRTC's log."""
    nvrtc = nvrtc_module()
    import cupy

    include = Path(cupy.__file__).parent / "_core" / "include"
    program = nvrtc.createProgram(source, "nn_gpu_kernels.cu", [], [])
    try:
        nvrtc.compileProgram(program, ["--std=c++17", "-arch=compute_75", f"-I{include}"])
    except nvrtc.NVRTCError:
        raise AssertionError(nvrtc.getProgramLog(program)) from None
    return nvrtc.getPTX(program).decode()


def elementwise_code(name: str, in_params: str, out_params: str, operation: str, ctype: str) -> str:
    """The code CuPy would generate for this ElementwiseKernel, for contiguous 1-D arrays of `ctype`."""
    params, views = [], []
    for group, const in ((in_params, "const "), (out_params, "")):
        for param in group.split(","):
            *keywords, type_, var = param.split()
            c_type = {"T": ctype, "L": "int", "int32": "int"}[type_]
            if type_ == "int32":
                params.append(f"{const}int {var}")
            elif keywords == ["raw"]:
                params.append(f"{const}CArray<{c_type}, 2, 1, 1> {var}")
            else:
                params.append(f"{const}CArray<{c_type}, 1, 1, 1> _raw_{var}")
                views.append(f"{const}{c_type} &{var} = _raw_{var}[_ind.get()];")
    params.append("CIndexer<1, 1> _ind")
    return f"""#include <cupy/carray.cuh>
typedef {ctype} T;
typedef int L;
{CUDA_SOURCE}
extern "C" __global__ void {name}({", ".join(params)}) {{
  #pragma unroll 1
  CUPY_FOR(i, _ind.size()) {{
    _ind.set(i);
    {" ".join(views)}
    {operation};
  }}
}}
"""


@pytest.mark.parametrize("ctype", ["float", "double"])
@pytest.mark.parametrize("kernel", KERNELS, ids=[k[0] for k in KERNELS])
def test_elementwise_kernel_compiles(kernel, ctype):
    ptx = compile_cuda(elementwise_code(*kernel, ctype))
    assert f".entry {kernel[0]}(" in ptx


def test_fused_step_kernels_compile_for_float_and_double():
    ptx = compile_cuda(CUDA_SOURCE + FUSED_SOURCE)
    for kernel in ("nn_fused_forward_backward", "nn_fused_weight_gradient", "nn_fused_update"):
        for suffix in ("f32", "f64"):
            assert f".entry {kernel}_{suffix}(" in ptx


def test_a_cuda_error_fails_the_compile():
    nvrtc_module()
    broken = CUDA_SOURCE.replace("return z > (T)0 ? z : (T)0;", "return z > (T)0 ? z : undefined_name;")
    assert broken != CUDA_SOURCE
    with pytest.raises(AssertionError, match="undefined_name"):
        compile_cuda(elementwise_code(*KERNELS[0], "float").replace(CUDA_SOURCE, broken))
