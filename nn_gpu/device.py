"""One Device object: where arrays live and which array module (`xp`) runs the math.

`resolve_device("auto" | "cpu" | "gpu" | "gpu:N")` is called once; everything else takes `xp`, the
op table and the host/device transfers from the object it returns. CuPy is imported only here,
inside a guarded function, so `import nn_gpu` and every CPU path work with no CUDA anywhere.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from nn_gpu import cpu
from nn_gpu.errors import DeviceError, one_line

INSTALL_HINT = "install CuPy for your CUDA version: pip install -e '.[cuda12]' or '.[cuda13]'"
DEVICE_KINDS = ("auto", "cpu", "gpu")  # and gpu:N, a chosen card
DEVICE_CHOICES = f"{', '.join(DEVICE_KINDS)} or gpu:N"


class WholeBatches:
    """Runs each batch whole, one after another: on the GPU, its own thousands of threads share the work.

    The same calls as nn_gpu.cpu.Blocks: sum_gradients(sum_batch, X, y, flat_grad, sums),
    map_batches(task, m, size) and whole(task); `threads` (host threads) is 1.
    """

    threads = 1

    def whole(self, task):
        return task()

    def sum_gradients(self, sum_batch, X, y, flat_grad, sums):
        return sum_batch(X, y, flat_grad, sums, 0)

    def map_batches(self, task, m: int, size: int) -> list:
        return [task(start) for start in range(0, m, size)]


@dataclass(frozen=True)
class Device:
    """A resolved device.

    name: "cpu" or "gpu"; xp: numpy or cupy; ops: the op table (see nn_gpu.ops) whose ReLU, ReLU'
    and softmax run as NumPy code or as custom CUDA kernels; index: the card's number on the GPU
    (CuPy's current device from then on), None on the CPU; runner: makes what runs a network's
    batches here (WholeBatches above, or nn_gpu.cpu.Blocks), one per network.
    """

    name: str
    xp: ModuleType
    ops: Any
    index: int | None = None
    runner: Callable[[], Any] = WholeBatches

    def to_device(self, array: np.ndarray):
        """Copy a host array to this device (no copy on the CPU)."""
        return self.xp.asarray(array)

    def to_host(self, array) -> np.ndarray:
        """Copy an array back to the host as NumPy. Synchronises with the GPU."""
        if self.name == "gpu":
            return self.xp.asnumpy(array)
        return np.asarray(array)

    def upload(self, target, host: np.ndarray) -> None:
        """Copy a host array into the device array `target` of its shape (C-contiguous), queued behind
        the work before it on the current stream (the host does not wait for that work)."""
        if self.name == "gpu":
            target.set(np.ascontiguousarray(host, dtype=target.dtype), stream=self.xp.cuda.get_current_stream())
        else:
            target[...] = host

    def synchronize(self) -> None:
        """Wait until queued GPU work has finished (a no-op on the CPU); call before reading a clock."""
        if self.name == "gpu":
            self.xp.cuda.get_current_stream().synchronize()

    @property
    def card_name(self) -> str | None:
        """The GPU's name as the driver gives it, e.g. 'NVIDIA H200'; None on the CPU."""
        if self.name != "gpu":
            return None
        return self.xp.cuda.runtime.getDeviceProperties(self.index)["name"].decode()

    def describe(self) -> str:
        """A short human description, e.g. 'gpu:0 (NVIDIA H200)' or 'cpu (NumPy 2.4.6)'."""
        if self.name == "gpu":
            return f"gpu:{self.index} ({self.card_name})"
        return f"cpu (NumPy {np.__version__})"


def cpu_device() -> Device:
    """The NumPy device: its products in OpenBLAS's fastest layout, its batches in blocks on worker threads."""
    return Device("cpu", np, cpu.CPU_OPS, runner=cpu.Blocks)


def cuda_version(version: int) -> str:
    """CUDA's integer version as people write it: 13020 -> '13.2'."""
    return f"{version // 1000}.{version % 1000 // 10}"


def _gpu_count() -> tuple[int, str | None]:
    """(number of usable cards, None), or (0, why the GPU cannot be used: one line with the fix)."""
    try:
        import cupy
    except ImportError:
        return 0, f"CuPy not installed: {INSTALL_HINT}"
    runtime = cupy.cuda.runtime
    try:
        driver, built_for = runtime.driverGetVersion(), runtime.runtimeGetVersion()
    except Exception as error:  # CuPy's own libraries are broken or missing
        return 0, f"CuPy cannot load the CUDA runtime: {error}; {INSTALL_HINT}"
    if driver == 0:
        return 0, "no CUDA device: no NVIDIA driver found on this machine; use --device cpu"
    # CUDA's minor-version compatibility: a driver for CUDA 13.0 runs a runtime built for 13.2, so only
    # the major versions must agree (a newer driver runs older runtimes).
    if driver // 1000 < built_for // 1000:
        return 0, (
            f"driver too old: the NVIDIA driver supports CUDA {cuda_version(driver)}, this CuPy is built for "
            f"CUDA {cuda_version(built_for)} and needs a driver for CUDA {built_for // 1000}; update the driver, "
            f"or install the CuPy build for CUDA {driver // 1000}: pip install cupy-cuda{driver // 1000}x"
        )
    try:
        count = runtime.getDeviceCount()
    except runtime.CUDARuntimeError as error:
        return 0, f"no CUDA device: {error}; use --device cpu"
    if count == 0:
        return 0, "no CUDA device: the driver sees no GPU; use --device cpu"
    return count, None


def gpu_unavailable_reason() -> str | None:
    """Why the GPU cannot be used, as one line with the fix, or None when it can. The cause comes
    first, before the first ': ' (e.g. 'CuPy not installed'), as a short note can quote it."""
    return _gpu_count()[1]


def parse_device(name: str) -> tuple[str, int | None]:
    """`--device` as (kind, card): "cpu" -> ("cpu", None); "gpu" -> ("gpu", 0); "gpu:N" -> ("gpu", N);
    "auto" -> ("auto", 0). DeviceError for anything else."""
    if name in DEVICE_KINDS:
        return name, None if name == "cpu" else 0
    match = re.fullmatch(r"gpu:(\d+)", name)
    if match is None:
        raise DeviceError(f"unknown device {name!r}: choose {DEVICE_CHOICES}")
    return "gpu", int(match.group(1))


def resolve_device(name: str = "auto") -> Device:
    """Parse `--device`: "cpu"; "gpu" or "gpu:N" (DeviceError if unusable; "gpu" is card 0); or "auto"
    (card 0 if usable, else the CPU). The chosen card becomes CuPy's current device."""
    kind, index = parse_device(name)
    if kind == "cpu":
        return cpu_device()
    count, reason = _gpu_count()
    if reason is not None:
        if kind == "gpu":
            raise DeviceError(f"--device {name}: {reason}")
        return cpu_device()
    if index >= count:
        seen = "1 GPU (gpu:0)" if count == 1 else f"{count} GPUs (gpu:0 to gpu:{count - 1})"
        raise DeviceError(f"--device {name}: no such card: the driver sees {seen}")
    import cupy

    from nn_gpu import kernels  # CUDA kernels: imports CuPy, so only when a card is used

    cupy.cuda.Device(index).use()
    return Device("gpu", cupy, kernels.KERNEL_OPS, index)


def out_of_memory_error(error: BaseException) -> DeviceError | None:
    """A one-line DeviceError for CuPy's OutOfMemoryError (sizes and the advice), else None."""
    cupy = sys.modules.get("cupy")  # CuPy raises it, so CuPy is imported by then; never imported here
    if cupy is None or not isinstance(error, cupy.cuda.memory.OutOfMemoryError):
        return None
    detail = one_line(error).rstrip(".")
    return DeviceError(f"GPU out of memory: {detail}; train with a smaller --batch-size, or use --device cpu")
