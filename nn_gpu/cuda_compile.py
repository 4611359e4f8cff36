"""nn_gpu's CUDA compiled as CuPy compiles it on a card, with no card: sources, ptxas' figures, checks.

CuPy builds an ElementwiseKernel's source from the arguments of each call (their dtypes, ndim,
contiguity and index width) and compiles it with NVRTC on first use. Here CuPy's own code generator
writes that source for every layout nn_gpu calls each kernel with (KERNEL_LAYOUTS in
nn_gpu/cuda_source.py), and NVRTC compiles it, and the training step's and the fused step's
RawModules (nn_gpu/fused_source.py), with the options CuPy adds, for a chosen card (-arch=sm_XX).
ptxas' report gives each kernel's registers, spills, stack and shared memory; `problems` names what would fail or crawl on the card. NVRTC needs no
driver, so CI runs all of this (pip install -e '.[nvrtc]').

    python -m nn_gpu.cuda_compile        # the table of ptxas figures in docs/benchmarks.md
"""

from __future__ import annotations

import itertools
import re
import sys
from dataclasses import dataclass

import numpy as np

from nn_gpu.cuda_source import CUDA_SOURCE, KERNEL_LAYOUTS, LAST_BLOCK_SOURCE, STEP_OPTIONS, STEP_SOURCE, STEP_THREADS
from nn_gpu.fused_source import FUSED_OPTIONS, FUSED_SOURCE, kernel_names

CARDS = {"90": "H100, H200", "80": "A100", "75": "T4 (Kaggle, Colab)", "60": "P100 (Kaggle)"}
REGISTERS_PER_SM = 65536  # 32-bit registers in an SM's file (and the most one block may use), sm_60 to sm_90
SHARED_PER_BLOCK = 48 * 1024  # static shared memory a block may have
ELEMENTWISE_THREADS = 128  # CuPy launches an ElementwiseKernel with blocks of at most 128 threads


class CompileError(RuntimeError):
    """NVRTC refused a source; the message is its log."""


@dataclass(frozen=True)
class Source:
    """One program as CuPy hands it to NVRTC: what it is, its text, its options, the block size it runs with."""

    label: str
    code: str
    options: tuple[str, ...]
    threads: int | dict[str, int]  # the block size of every kernel, or of each by name

    def threads_of(self, kernel: str) -> int:
        return self.threads if isinstance(self.threads, int) else self.threads[kernel]


@dataclass(frozen=True)
class KernelFigures:
    """ptxas' report of one entry function compiled for one card."""

    arch: str
    source: str
    kernel: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    shared: int
    threads: int


def _nvrtc():
    from cupy_backends.cuda.libs import nvrtc

    return nvrtc


def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library CuPy loads; raises if there is none."""
    return _nvrtc().getVersion()


def _arg_infos(layout, dtype, wide: bool):
    """CuPy's _ArgInfo for each argument of one layout (see KERNEL_LAYOUTS); `wide`: the arrays that
    grow with m are past 2 GiB and indexed with 64 bits."""
    import cupy
    from cupy._core import _carray, _kernel, _scalar

    *arrays, (indexer_ndim, indexer_grows) = layout
    infos = []
    for entry, dt in zip(arrays, dtype):
        if entry is None:
            infos.append(_kernel._ArgInfo(3, _scalar.CScalar, dt, 0, True, True))  # a scalar argument
        else:
            ndim, contiguous, grows = entry
            infos.append(_kernel._ArgInfo(1, cupy.ndarray, dt, ndim, contiguous, not (wide and grows)))
    infos.append(_kernel._ArgInfo(2, _carray.Indexer, None, indexer_ndim, True, not (wide and indexer_grows)))
    return tuple(infos)


def _param_dtypes(kernel, dtype: np.dtype):
    """The dtype of each in and out parameter when T is `dtype` (L, the labels, is int32)."""
    return [
        np.dtype(p.dtype) if p.dtype is not None else dtype if p.ctype == "T" else np.dtype(np.int32)
        for p in kernel.in_params + kernel.out_params
    ]


def elementwise_code(kernel, arg_infos, type_map) -> str:
    """The source CuPy compiles for `kernel` called with arguments of these _ArgInfos, CuPy's headers first."""
    from cupy._core import _kernel, core

    header = "".join(f"#include <{name}>\n" for name in core._cupy_header_list)
    return header + _kernel._get_elementwise_kernel_code(
        arg_infos, type_map, kernel.params, kernel.operation, kernel.name, kernel.preamble, **kernel.kwargs
    )


def elementwise_sources() -> list[Source]:
    """Every ElementwiseKernel source nn_gpu makes CuPy compile: each kernel x layout x dtype x index width."""
    from nn_gpu.kernels import ELEMENTWISE_KERNELS

    sources, seen = [], set()
    for kernel in ELEMENTWISE_KERNELS:
        for (number, layout), name, wide in itertools.product(
            enumerate(KERNEL_LAYOUTS[kernel.name]), ("float32", "float64"), (False, True)
        ):
            dtypes = _param_dtypes(kernel, np.dtype(name))
            n_in = len(kernel.in_params)
            array_dtypes = [None if entry is None else dt for entry, dt in zip(layout, dtypes)]
            _, _, type_map = kernel._decide_params_type(tuple(array_dtypes[:n_in]), tuple(dtypes[n_in:]))
            code = elementwise_code(kernel, _arg_infos(layout, dtypes, wide), type_map)
            if code not in seen:  # a layout with nothing growing with m has one index width
                seen.add(code)
                label = f"{kernel.name} layout {number} {name} {'64' if wide else '32'}-bit"
                sources.append(Source(label, code, (), ELEMENTWISE_THREADS))
    return sources


def fused_source() -> Source:
    """The fused step's RawModule as nn_gpu/fused.py builds it (CuPy adds no header to a RawModule)."""
    return Source("fused step", CUDA_SOURCE + LAST_BLOCK_SOURCE + FUSED_SOURCE, FUSED_OPTIONS, kernel_names())


def step_source() -> Source:
    """The training step's RawModule as nn_gpu/kernels.py builds it."""
    return Source("training step", CUDA_SOURCE + STEP_SOURCE, STEP_OPTIONS, STEP_THREADS)


def cupy_options(options: tuple[str, ...], arch: str) -> tuple[str, ...]:
    """NVRTC's options as CuPy's compile_with_cache sets them for a card of compute capability `arch`."""
    from cupy._core import core

    return (
        *core.assemble_cupy_compiler_options(tuple(options)),
        "-ftz=true",
        f"-arch=sm_{arch}",
        "--device-as-default-execution-space",
    )


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for 'sm_(\d+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SHARED = re.compile(r"(\d+) bytes smem")


def parse_ptxas(log: str, source: Source) -> list[KernelFigures]:
    """The figures of each entry function in a ptxas -v log."""
    figures, current = [], None
    for line in log.splitlines():
        if entry := _ENTRY.search(line):
            current = {"kernel": entry.group(1), "arch": entry.group(2)}
        elif current is not None and (frame := _FRAME.search(line)):
            current.update(stack=int(frame.group(1)), spill_stores=int(frame.group(2)), spill_loads=int(frame.group(3)))
        elif current is not None and (used := _USED.search(line)):
            shared = _SHARED.search(line)
            current.update(registers=int(used.group(1)), shared=int(shared.group(1)) if shared else 0)
            figures.append(KernelFigures(source=source.label, threads=source.threads_of(current["kernel"]), **current))
            current = None
    return figures


def compile_source(source: Source, arch: str, extra_options: tuple[str, ...] = ()) -> list[KernelFigures]:
    """Compile `source` to a cubin for sm_`arch` as CuPy would; the figures of its kernels.
    CompileError with NVRTC's log if it does not compile."""
    nvrtc = _nvrtc()
    options = (*cupy_options(source.options, arch), "--ptxas-options=-v", *extra_options)
    program = nvrtc.createProgram(source.code, "kern.cu", [], [])
    try:
        nvrtc.compileProgram(program, list(options))
        figures = parse_ptxas(nvrtc.getProgramLog(program), source)
    except nvrtc.NVRTCError:
        raise CompileError(f"{source.label} for sm_{arch}: {nvrtc.getProgramLog(program)}") from None
    finally:
        nvrtc.destroyProgram(program)
    if not figures:  # seen on a GPU machine: NVRTC 13 took the cubin from the CUDA cache, and ptxas never ran
        raise CompileError(
            f"{source.label} for sm_{arch}: compiled, but ptxas printed no figures; if the CUDA cache answered, "
            "run with CUDA_CACHE_DISABLE=1"
        )
    return figures


def problems(figures: KernelFigures) -> list[str]:
    """What ptxas' figures say would fail or crawl on the card: spills to local memory, more registers
    than an SM has for one block, more static shared memory than a block may have."""
    where = f"{figures.kernel} ({figures.source}) for sm_{figures.arch}"
    found = []
    if figures.spill_stores or figures.spill_loads:
        found.append(f"{where}: spills registers ({figures.spill_stores} bytes stored, {figures.spill_loads} loaded)")
    if figures.registers * figures.threads > REGISTERS_PER_SM:
        found.append(
            f"{where}: {figures.registers} registers x {figures.threads} threads = "
            f"{figures.registers * figures.threads:,} > the SM's {REGISTERS_PER_SM:,}: the launch would fail"
        )
    if figures.shared > SHARED_PER_BLOCK:
        found.append(f"{where}: {figures.shared:,} bytes of shared memory > {SHARED_PER_BLOCK:,}")
    return found


def supports_arch(arch: str) -> bool:
    """Whether this NVRTC compiles for sm_`arch` (NVRTC 13 dropped sm_60 to sm_72)."""
    return int(arch) in _nvrtc().getSupportedArchs()


def compile_all(arch: str) -> list[KernelFigures]:
    """Every source nn_gpu makes CuPy compile (elementwise kernels, training step, fused step), compiled for sm_`arch`."""
    sources = [*elementwise_sources(), step_source(), fused_source()]
    return [f for source in sources for f in compile_source(source, arch)]


def figures_table(archs=tuple(CARDS)) -> str:
    """A Markdown table: per kernel, per card, registers / stack bytes / shared-memory bytes, and the
    spills over all cards. An elementwise kernel shows its largest figures over its layouts."""
    by_kernel: dict[str, dict[str, list[KernelFigures]]] = {}
    for arch in archs:
        for f in compile_all(arch) if supports_arch(arch) else []:
            by_kernel.setdefault(f.kernel, {}).setdefault(arch, []).append(f)
    lines = [
        "| kernel | threads | " + " | ".join(f"sm_{arch} {CARDS[arch]}" for arch in archs) + " | spills |",
        "| --- | --- | " + "--- | " * len(archs) + "--- |",
    ]
    for kernel, per_arch in by_kernel.items():
        cells = []
        for arch in archs:
            found = per_arch.get(arch)
            if not found:
                cells.append("not compiled")
                continue
            cells.append(
                f"{max(f.registers for f in found)} / {max(f.stack for f in found)} / {max(f.shared for f in found):,}"
            )
        spills = sum(f.spill_stores + f.spill_loads for fs in per_arch.values() for f in fs)
        threads = next(iter(per_arch.values()))[0].threads
        lines.append(f"| {kernel} | {threads} | " + " | ".join(cells) + f" | {spills} |")
    return "\n".join(lines)


def main() -> int:
    print(f"NVRTC {'.'.join(map(str, nvrtc_version()))}: registers / stack bytes / shared-memory bytes")
    print(figures_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
