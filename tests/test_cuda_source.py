"""nn_gpu's CUDA compiled exactly as CuPy compiles it on a card, for the cards users have, with no card.

CuPy's own code generator writes each ElementwiseKernel's source for every argument layout nn_gpu
uses (nn_gpu.cuda_compile); NVRTC compiles it, and the fused step's RawModule, with CuPy's options
for sm_90 (H100/H200), sm_80 (A100), sm_75 (T4) and sm_60 (P100), and ptxas' figures are checked:
no register spills, registers x threads within the SM's file, shared memory within 48 KB. CuPy's
compile path needs a driver; NVRTC itself does not. Set NN_GPU_REQUIRE_NVRTC=1 (CI does) to fail
instead of skip when NVRTC is missing.
"""

import functools
import os
import re

import numpy as np
import pytest

from nn_gpu import cuda_compile
from nn_gpu.cuda_source import CUDA_SOURCE, KERNEL_LAYOUTS, KERNELS, STEP_KERNELS, STEP_THREADS, step_launch
from nn_gpu.fused_source import FUSED_CHUNK, FUSED_MAX_HIDDEN, FUSED_THREADS, fused_launch

STEP = {f"nn_step_{kernel}_{suffix}" for kernel in STEP_KERNELS for suffix in ("f32", "f64")}


@functools.cache
def nvrtc_or_skip():
    try:
        return cuda_compile.nvrtc_version()
    except Exception as error:  # no CuPy, or no NVRTC library (pip install -e '.[nvrtc]')
        if os.environ.get("NN_GPU_REQUIRE_NVRTC") == "1":
            raise
        pytest.skip(f"NVRTC not available ({type(error).__name__}: {error}); pip install -e '.[nvrtc]'")


def arch_or_skip(arch: str) -> str:
    major, minor = nvrtc_or_skip()
    if not cuda_compile.supports_arch(arch):
        if major >= 13 and int(arch) < 75:  # CUDA 13 dropped Pascal; CuPy for CUDA 12 still builds it
            pytest.skip(f"NVRTC {major}.{minor} no longer compiles for sm_{arch} (CUDA 12's does)")
        pytest.fail(f"NVRTC {major}.{minor} cannot compile for sm_{arch}")
    return arch


@functools.cache
def figures(arch: str):
    return cuda_compile.compile_all(arch)


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(cuda_compile.CARDS))
def test_every_kernel_compiles_as_cupy_would_within_the_cards_limits(arch):
    found = figures(arch_or_skip(arch))
    kernels = {f.kernel for f in found}
    assert kernels == {name for name, *_ in KERNELS} | STEP | {
        f"nn_fused_{kernel}_{suffix}"
        for kernel in ("forward_backward", "weight_gradient", "update")
        for suffix in ("f32", "f64")
    }
    assert {f.arch for f in found} == {arch}
    assert all(f.registers > 0 for f in found)
    assert [problem for f in found for problem in cuda_compile.problems(f)] == []
    # Every kernel of a training step keeps its arrays in registers: no stack frame, so no local memory.
    # (The fused step's per-sample arrays, indexed by the run-time H, are still on its stack.)
    framed = {f.kernel: f.stack for f in found if f.stack and not f.kernel.startswith("nn_fused_")}
    assert framed == {}


@pytest.mark.slow
def test_every_layout_dtype_and_index_width_is_its_own_source():
    nvrtc_or_skip()
    sources = cuda_compile.elementwise_sources()
    # 2 dtypes x 2 index widths per layout, less the layouts with nothing that grows with m (one width)
    grows = lambda layout: any(e is not None and e[-1] for e in layout)  # noqa: E731
    expected = sum(2 * (2 if grows(layout) else 1) for layouts in KERNEL_LAYOUTS.values() for layout in layouts)
    assert len(sources) == len({s.code for s in sources}) == expected
    relu = [s.code for s in sources if s.label.startswith("nn_gpu_bias_relu layout 0 float32 32-bit")]
    assert len(relu) == 1
    assert (
        "void nn_gpu_bias_relu(const CArray<float, 2, 0, 1> _raw_b, CArray<float, 2, 1, 1> _raw_z, CIndexer<2, 1> _ind)"
        in relu[0]
    )
    assert relu[0].startswith("#include <cupy/complex.cuh>\n") and CUDA_SOURCE in relu[0]
    wide = [s.code for s in sources if s.label == "nn_gpu_bias_relu layout 0 float64 64-bit"][0]
    assert "const CArray<double, 2, 0, 1> _raw_b, CArray<double, 2, 1, 0> _raw_z, CIndexer<2, 0> _ind" in wide


def test_cupy_options_are_those_of_its_compile_path():
    nvrtc_or_skip()
    options = cuda_compile.cupy_options(("--std=c++17",), "90")
    assert options[-3:] == ("-ftz=true", "-arch=sm_90", "--device-as-default-execution-space")
    assert options.count("--std=c++17") == 1 and any(o.endswith("_core/include") for o in options)


@pytest.mark.slow
def test_a_cuda_error_fails_the_compile_with_nvrtcs_log():
    nvrtc_or_skip()
    source = cuda_compile.fused_source()
    broken = source.code.replace("return z > (T)0 ? z : (T)0;", "return z > (T)0 ? z : undefined_name;")
    assert broken != source.code
    with pytest.raises(cuda_compile.CompileError, match="fused step for sm_80: .*undefined_name"):
        cuda_compile.compile_source(cuda_compile.Source("fused step", broken, source.options, 256), "80")


def test_a_compile_whose_ptxas_said_nothing_is_an_error(monkeypatch):
    nvrtc_or_skip()
    monkeypatch.setattr(cuda_compile, "parse_ptxas", lambda log, source: [])  # as when the CUDA cache answers
    with pytest.raises(
        cuda_compile.CompileError, match=r"^fused step for sm_80: compiled, but ptxas printed no figures"
    ):
        cuda_compile.compile_source(cuda_compile.fused_source(), "80")


@pytest.mark.slow
def test_the_checks_catch_real_spills_and_limits():
    arch_or_skip("80")
    # Squeezed to 32 registers, the fused forward-backward pass (about 160 in float64) must spill.
    squeezed = cuda_compile.compile_source(cuda_compile.fused_source(), "80", ("--maxrregcount=32",))
    spilled = [f for f in squeezed if f.kernel == "nn_fused_forward_backward_f64"][0]
    assert spilled.registers <= 32 and spilled.spill_stores > 0
    assert "spills registers" in " ".join(cuda_compile.problems(spilled))
    normal = [f for f in figures("80") if f.kernel == "nn_fused_forward_backward_f64"][0]
    assert normal.registers > 128 and cuda_compile.problems(normal) == []
    launched_wider = cuda_compile.KernelFigures(**{**normal.__dict__, "threads": 1024})
    assert cuda_compile.problems(launched_wider) == [
        f"nn_fused_forward_backward_f64 (fused step) for sm_80: {normal.registers} registers x 1024 threads = "
        f"{normal.registers * 1024:,} > the SM's 65,536: the launch would fail"
    ]
    shared = cuda_compile.KernelFigures(**{**normal.__dict__, "shared": 49153})
    assert cuda_compile.problems(shared) == [
        "nn_fused_forward_backward_f64 (fused step) for sm_80: 49,153 bytes of shared memory > 49,152"
    ]


def test_ptxas_report_is_read_per_entry():
    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'a_f32' for 'sm_90'
ptxas info    : Function properties for a_f32
ptxas         .     176 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 72 registers, used 1 barriers, 176 bytes cumulative stack size, 1456 bytes smem
ptxas info    : Compiling entry function 'b' for 'sm_90'
ptxas info    : Function properties for b
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 17 registers, used 0 barriers
"""
    source = cuda_compile.Source("s", "", (), 128)
    assert cuda_compile.parse_ptxas(log, source) == [
        cuda_compile.KernelFigures("90", "s", "a_f32", 72, 8, 4, 176, 1456, 128),
        cuda_compile.KernelFigures("90", "s", "b", 17, 0, 0, 0, 0, 128),
    ]


def visits_of_forward_backward(count, blocks, threads):
    """How often the fused forward-backward kernel's loop reaches each sample (one warp per sample)."""
    warps = threads // 32
    visits = np.zeros(count, dtype=np.int64)
    first = np.arange(blocks * warps)  # s = block x warps + warp, then s += blocks x warps
    for start in range(0, count, blocks * warps):
        s = start + first
        np.add.at(visits, s[s < count], 1)
    return visits


def visits_of_weight_gradient(count, grid_y, chunk):
    """How often the weight-gradient kernel's blocks reach each sample, following its loop: block y
    takes the chunks [first, first + min(chunk, count - first)) for first = (y + k grid_y) chunk."""
    edges = np.zeros(count + 1, dtype=np.int64)  # +1 where a chunk starts, -1 after it ends
    for y in range(grid_y):
        for first in range(y * chunk, count, grid_y * chunk):
            edges[first] += 1
            edges[first + min(chunk, count - first)] -= 1
    return np.cumsum(edges)[:count]


@pytest.mark.parametrize("sms", [1, 40, 56, 108, 132])
@pytest.mark.parametrize("hidden", [1, 10, 32])
@pytest.mark.parametrize("count", [1, 7, 100, 128, 1000, 41000, 1_000_000])
def test_fused_launch_covers_every_sample_once_within_cuda_limits(count, hidden, sms):
    launch = fused_launch(count, hidden, sms, 795 * hidden + 10)  # 784-H-10: W1, b1, W2, b2
    blocks, threads = launch["forward_backward"]
    assert threads % 32 == 0 and 32 <= threads <= FUSED_THREADS and 1 <= blocks <= 1024
    assert (visits_of_forward_backward(count, blocks, threads) == 1).all()
    (grid_x, grid_y), threads, chunk = launch["weight_gradient"]
    assert threads == FUSED_THREADS and grid_x * threads >= 784 > (grid_x - 1) * threads
    assert 1 <= chunk and hidden * chunk <= FUSED_MAX_HIDDEN * FUSED_CHUNK  # dZ1 of a chunk fits in shared memory
    assert 1 <= grid_y <= 65535 and grid_y <= -(-count // chunk)  # no block without a chunk
    assert (visits_of_weight_gradient(count, grid_y, chunk) == 1).all()
    blocks, threads = launch["update"]
    assert 1 <= blocks <= 1024 and threads == FUSED_THREADS


def test_fused_launch_gives_every_sm_work_at_batch_128():
    # An H200 has 132 SMs. Chunks sized for full batches gave batch 128 one chunk: 4 blocks in all.
    launch = fused_launch(128, 10, 132, 7960)
    (grid_x, grid_y), _, chunk = launch["weight_gradient"]
    assert grid_x * grid_y >= 132 and chunk <= 2
    blocks, threads = launch["forward_backward"]
    assert blocks == 128 and threads == 32  # one warp per sample, a block each
    full = fused_launch(41000, 10, 132, 7960)
    assert full["forward_backward"] == (1024, 256)
    assert full["weight_gradient"] == ((4, 101), 256, 409)  # the largest chunk for H = 10: 4,096 / 10


def test_fused_launch_bounds_the_grid_for_huge_batches():
    (grid_x, grid_y), _, chunk = fused_launch(2**31 - 1, 32, 132, 25450)["weight_gradient"]
    assert chunk == 128 and grid_y == 264  # 8 blocks per SM; each block then takes many chunks


@pytest.mark.slow
def test_figures_table_has_a_row_per_kernel_and_a_column_per_card():
    arch_or_skip("80")
    lines = cuda_compile.figures_table(("80",)).splitlines()
    assert lines[0] == "| kernel | threads | sm_80 A100 | spills |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert len(rows) == len(KERNELS) + len(STEP) + 6
    assert re.fullmatch(r"\| nn_gpu_softmax \| 128 \| \d+ / 0 / 0 \| 0 \|", rows["nn_gpu_softmax"])
    assert re.fullmatch(
        r"\| nn_fused_weight_gradient_f64 \| 256 \| \d+ / \d+ / 32,768 \| 0 \|", rows["nn_fused_weight_gradient_f64"]
    )


@pytest.mark.parametrize("sms", [1, 56, 132])
@pytest.mark.parametrize("work", [1, 100, 128, 257, 41000, 10**7])
def test_step_launch_gives_every_block_work_within_cuda_limits(work, sms):
    for kernel in ("gather", "output_layer", "sgd", "adam"):
        (blocks,), threads = step_launch(kernel, work, sms)
        assert threads == STEP_THREADS and threads & (threads - 1) == 0  # a power of two, for the block sums
        assert 1 <= blocks <= 8 * sms and (blocks - 1) * threads < work  # no block without an item
    for rows in (1, 10, 1024):
        (splits, grid_y), _ = step_launch("relu_backward_db", work, sms, rows)
        assert grid_y == rows and 1 <= splits and (splits - 1) * STEP_THREADS < work
        assert splits == 1 or splits * rows <= 4 * sms + rows  # about 4 blocks an SM at most
