"""Compile the CUDA source of every kernel with NVRTC: CUDA errors fail CI, which has no GPU.

CuPy's own compile path needs a driver; NVRTC itself does not. Each ElementwiseKernel's one-line
operation is compiled for float and double inside a stand-in for what CuPy generates (raw
parameters as pointers, the others as scalars, `i` and `_ind.size()`), together with CUDA_SOURCE.
Set NN_GPU_REQUIRE_NVRTC=1 (CI does) to fail instead of skip when NVRTC is missing.
"""

import os

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
    """PTX for `source`, or AssertionError carrying NVRTC's log."""
    nvrtc = nvrtc_module()
    program = nvrtc.createProgram(source, "nn_gpu_kernels.cu", [], [])
    try:
        nvrtc.compileProgram(program, ["--std=c++17", "-arch=compute_75"])
    except nvrtc.NVRTCError:
        raise AssertionError(nvrtc.getProgramLog(program)) from None
    return nvrtc.getPTX(program).decode()


def _declaration(param: str, scalars: list[str], T: str, const: str) -> str:
    words = param.split()
    ctype = {"int32": "int", "T": T, "L": "int"}.get(words[-2], words[-2])
    if words[0] == "raw":  # CuPy passes raw inputs read-only
        return f"{const}{ctype}* {words[-1]}"
    scalars.append(f"{ctype} {words[-1]} = ({ctype})0;")
    return ""


def stand_in(name: str, in_params: str, out_params: str, operation: str, ctype: str) -> str:
    """A __global__ function around `operation`, shaped like CuPy's ElementwiseKernel code."""
    scalars: list[str] = []
    params = [(p.strip(), "const ") for p in in_params.split(",")] + [(p.strip(), "") for p in out_params.split(",")]
    pointers = [d for d in (_declaration(p, scalars, ctype, const) for p, const in params) if d]
    return f"""
extern "C" __global__ void check_{name}_{ctype}({", ".join(pointers)}) {{
    typedef {ctype} T;
    struct {{ __device__ ptrdiff_t size() const {{ return 64; }} }} _ind;
    ptrdiff_t i = threadIdx.x;
    {" ".join(scalars)}
    {operation};
}}
"""


def test_every_kernel_compiles_for_float_and_double():
    source = CUDA_SOURCE + "".join(stand_in(*kernel, ctype) for kernel in KERNELS for ctype in ("float", "double"))
    ptx = compile_cuda(source)
    for name, *_ in KERNELS:
        assert f"check_{name}_float" in ptx and f"check_{name}_double" in ptx


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
        compile_cuda(broken + stand_in(*KERNELS[0], "float"))
