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
from nn_gpu.cuda_source import CUDA_SOURCE, KERNEL_LAYOUTS, KERNELS, STEP_KERNELS, STEP_THREADS, ceil_div, step_launch
from nn_gpu.fused_source import (
    FUSED_BUILDS,
    FUSED_CHUNKS,
    FUSED_HIDDEN,
    FUSED_THREADS,
    FUSED_TILE,
    fused_launch,
    kernel_names,
)

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
    assert kernels == {name for name, *_ in KERNELS} | STEP | set(kernel_names())
    assert {f.arch for f in found} == {arch}
    assert all(f.registers > 0 for f in found)
    assert [problem for f in found for problem in cuda_compile.problems(f)] == []
    # Every kernel keeps its arrays in registers: no stack frame, so no local memory (the fused step's
    # per-thread sums and pieces included: H is a compile-time constant of each build)
    framed = {f.kernel: f.stack for f in found if f.stack}
    assert framed == {}
    assert {f.kernel: f.threads for f in found if f.kernel in kernel_names()} == kernel_names()


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
    # Squeezed to 8 blocks an SM (36 registers), the fused step's partial sums (about 200 in float64) must spill.
    source = cuda_compile.fused_source()
    squeezing = re.sub(r"__launch_bounds__\(NN_THREADS, \d\)", "__launch_bounds__(NN_THREADS, 8)", source.code)
    assert squeezing != source.code
    squeezed = cuda_compile.compile_source(
        cuda_compile.Source(source.label, squeezing, source.options, source.threads), "80"
    )
    spilled = [f for f in squeezed if f.kernel == "nn_tile_partials_10_f64"][0]
    assert spilled.registers <= 36 and spilled.spill_stores > 0
    assert "spills registers" in " ".join(cuda_compile.problems(spilled))
    normal = [f for f in figures("80") if f.kernel == "nn_tile_partials_10_f64"][0]
    assert normal.registers > 128 and normal.threads == 224 and cuda_compile.problems(normal) == []
    launched_wider = cuda_compile.KernelFigures(**{**normal.__dict__, "threads": 1024})
    assert cuda_compile.problems(launched_wider) == [
        f"nn_tile_partials_10_f64 (fused step) for sm_80: {normal.registers} registers x 1024 threads = "
        f"{normal.registers * 1024:,} > the SM's 65,536: the launch would fail"
    ]
    shared = cuda_compile.KernelFigures(**{**normal.__dict__, "shared": 49153})
    assert cuda_compile.problems(shared) == [
        "nn_tile_partials_10_f64 (fused step) for sm_80: 49,153 bytes of shared memory > 49,152"
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


def sample_visits(count: int, sms: int, blocks_per_sm: int) -> dict:
    """The fused step's coverage of a batch, following nn_tile_partials' index arithmetic in NumPy: how
    often each tile is taken by a block, each sample's each 16-byte piece copied, and each block's row
    read by the update's reduction."""
    launch = fused_launch(count, 10, sms, blocks_per_sm)  # the tiling is the same for every H
    (blocks, threads), tiles = launch["partials"], launch["tiles"]
    # block b takes tiles b, b + blocks, ...; tile k's piece e = t + i threads is sample 32 k + e // 49's
    # chunk e % 49, when that sample is in the batch
    tile_of_block = np.concatenate([np.arange(b, tiles, blocks) for b in range(blocks)])
    e = (np.arange(threads)[:, None] + threads * np.arange(nn_pieces())[None, :]).ravel()
    e = e[e < FUSED_TILE * FUSED_CHUNKS]
    sample = (FUSED_TILE * tile_of_block[:, None] + e[None, :] // FUSED_CHUNKS).ravel()
    chunk = np.broadcast_to(e % FUSED_CHUNKS, (len(tile_of_block), len(e))).ravel()
    inside = sample < count
    pieces = np.bincount(sample[inside] * FUSED_CHUNKS + chunk[inside], minlength=count * FUSED_CHUNKS)
    groups = launch["reduce"][1] // 32  # nn_tile_group_sum: group g reads rows g, g + groups, ...
    rows = np.bincount(np.concatenate([np.arange(g, blocks, groups) for g in range(groups)]), minlength=blocks)
    return {"tiles": np.bincount(tile_of_block, minlength=tiles), "pieces": pieces, "rows": rows}


def unit_visits(hidden: int) -> dict:
    """How often a block computes each pixel's dW1 column (nn_tile_accumulate), each hidden unit's A1
    (nn_tile_hidden), each entry of db1, dW2, db2, and the update reduces each gradient entry."""
    launch = fused_launch(1000, hidden, 132)
    threads, entries = launch["partials"][1], launch["entries"]
    t = np.arange(threads)
    pixels = np.bincount((4 * t[4 * t < 784, None] + np.arange(4)).ravel(), minlength=784)
    warps = threads // 32
    per_warp = ceil_div(hidden, warps)  # warp w takes [w HS, w HS + HS)
    units = np.arange(warps)[:, None] * per_warp + np.arange(per_warp)
    small = 11 * hidden + 10
    e_small = (t[:, None] + threads * np.arange(ceil_div(small, threads))).ravel()
    reduce_blocks = launch["reduce"][0]
    reduced = np.bincount((32 * np.arange(reduce_blocks)[:, None] + np.arange(32)).ravel(), minlength=entries)
    return {"pixels": pixels, "hidden": np.bincount(units[units < hidden], minlength=hidden),
            "smalls": np.bincount(e_small[e_small < small], minlength=small), "entries": reduced[:entries]}  # fmt: skip


def nn_pieces() -> int:
    return ceil_div(FUSED_TILE * FUSED_CHUNKS, FUSED_THREADS)


def assert_once(visits: dict) -> None:
    for name, found in visits.items():
        assert (found == 1).all(), f"{name}: visited {sorted(set(found.tolist()))} times"


@pytest.mark.parametrize("sms", [1, 108, 132])
@pytest.mark.parametrize("blocks_per_sm", sorted({blocks for _, blocks in FUSED_BUILDS.values()}))
@pytest.mark.parametrize("count", [1, 2, 31, 32, 33, 128, 1000, 8447, 8448, 8449, 41000, 60000, 999_983, 1_000_000])
def test_fused_tiling_copies_every_piece_of_every_sample_once(count, blocks_per_sm, sms):
    visits = sample_visits(count, sms, blocks_per_sm)
    assert_once(visits)
    assert len(visits["pieces"]) == count * 49
    blocks, threads = fused_launch(count, 10, sms, blocks_per_sm)["partials"]
    assert blocks == min(ceil_div(count, FUSED_TILE), blocks_per_sm * sms)  # never a block without a tile
    assert threads == FUSED_THREADS


@pytest.mark.parametrize("hidden", sorted({h for hs in FUSED_HIDDEN.values() for h in hs}))
def test_fused_tiling_computes_every_pixel_unit_and_entry_once(hidden):
    assert_once(unit_visits(hidden))
    launch = fused_launch(1000, hidden, 132)
    assert launch["entries"] == 795 * hidden + 12 and launch["reduce"][0] <= 65535
    assert FUSED_THREADS * nn_pieces() >= FUSED_TILE * FUSED_CHUNKS


def test_fused_tiling_is_caught_when_it_misses_a_piece(monkeypatch):
    # The emulation can fail: with a warp fewer in a block, some pieces of every tile are never copied
    import nn_gpu.fused_source

    monkeypatch.setattr(nn_gpu.fused_source, "FUSED_THREADS", FUSED_THREADS - 32)
    with pytest.raises(AssertionError, match=r"pieces: visited \[0, 1\] times"):
        test_fused_tiling_copies_every_piece_of_every_sample_once(1000, 1, 132)


@pytest.mark.slow
def test_figures_table_has_a_row_per_kernel_and_a_column_per_card():
    arch_or_skip("80")
    lines = cuda_compile.figures_table(("80",)).splitlines()
    assert lines[0] == "| kernel | threads | sm_80 A100 | spills |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert len(rows) == len(KERNELS) + len(STEP) + len(kernel_names())
    assert re.fullmatch(r"\| nn_gpu_softmax \| 128 \| \d+ / 0 / 0 \| 0 \|", rows["nn_gpu_softmax"])
    assert re.fullmatch(
        r"\| nn_tile_partials_10_f64 \| 224 \| \d+ / 0 / 33,520 \| 0 \|", rows["nn_tile_partials_10_f64"]
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
