"""One Device object: where arrays live and which array module (`xp`) runs the math.

`resolve_device("auto" | "cpu" | "gpu")` is called once; everything else takes `xp`, the op
table and the host/device transfers from the object it returns. CuPy is imported only here,
inside a guarded function, so `import nn_gpu` and every CPU path work with no CUDA anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from nn_gpu.errors import DeviceError

_INSTALL_HINT = "install CuPy for your CUDA version: pip install -e '.[cuda12]' or '.[cuda13]'"


@dataclass(frozen=True)
class Device:
    """A resolved device.

    name: "cpu" or "gpu"; xp: numpy or cupy; ops: the op table (see nn_gpu.ops) whose
    ReLU, ReLU' and softmax run as NumPy code or as custom CUDA kernels.
    """

    name: str
    xp: ModuleType
    ops: Any

    def to_device(self, array: np.ndarray):
        """Copy a host array to this device (no copy on the CPU)."""
        return self.xp.asarray(array)

    def to_host(self, array) -> np.ndarray:
        """Copy an array back to the host as NumPy. Synchronises with the GPU."""
        if self.name == "gpu":
            return self.xp.asnumpy(array)
        return np.asarray(array)

    def synchronize(self) -> None:
        """Wait until queued GPU work has finished (a no-op on the CPU); call before reading a clock."""
        if self.name == "gpu":
            self.xp.cuda.get_current_stream().synchronize()

    def describe(self) -> str:
        """A short human description, e.g. 'gpu (NVIDIA H100 80GB HBM3)' or 'cpu (NumPy 2.4.6)'."""
        if self.name == "gpu":
            props = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)
            return f"gpu ({props['name'].decode()})"
        return f"cpu (NumPy {np.__version__})"


def cpu_device() -> Device:
    """The NumPy device."""
    from nn_gpu import ops

    return Device("cpu", np, ops.REFERENCE_OPS)


def gpu_unavailable_reason() -> str | None:
    """Why the GPU cannot be used, as one line with the fix, or None when it can."""
    try:
        import cupy
    except ImportError:
        return f"CuPy not installed: {_INSTALL_HINT}"
    runtime = cupy.cuda.runtime
    try:
        driver = runtime.driverGetVersion()
    except Exception as error:  # CuPy's own libraries are broken or missing
        return f"CuPy cannot load the CUDA runtime ({error}); {_INSTALL_HINT}"
    if driver == 0:
        return "no CUDA device: no NVIDIA driver found on this machine; use --device cpu"
    if driver < runtime.runtimeGetVersion():
        return (
            f"driver too old: the NVIDIA driver supports CUDA {driver // 1000}.{driver % 1000 // 10}, "
            f"this CuPy needs {runtime.runtimeGetVersion() // 1000}; update the driver or install "
            f"the CuPy build for CUDA {driver // 1000}"
        )
    try:
        count = runtime.getDeviceCount()
    except runtime.CUDARuntimeError as error:
        return f"no CUDA device: {error}; use --device cpu"
    if count == 0:
        return "no CUDA device: the driver sees no GPU; use --device cpu"
    return None


def resolve_device(name: str = "auto") -> Device:
    """Parse `--device`: "cpu", "gpu" (DeviceError if unusable) or "auto" (GPU if usable, else CPU)."""
    if name == "cpu":
        return cpu_device()
    if name not in ("gpu", "auto"):
        raise DeviceError(f"unknown device {name!r}: choose auto, cpu or gpu")
    reason = gpu_unavailable_reason()
    if reason is None:
        import cupy

        from nn_gpu import kernels

        return Device("gpu", cupy, kernels.KERNEL_OPS)
    if name == "gpu":
        raise DeviceError(f"--device gpu: {reason}")
    return cpu_device()


def out_of_memory_error(error: BaseException) -> DeviceError | None:
    """A one-line DeviceError for CuPy's OutOfMemoryError (sizes and the advice), else None."""
    if type(error).__name__ != "OutOfMemoryError" or not type(error).__module__.startswith("cupy"):
        return None
    detail = " ".join(str(error).split()).rstrip(".")
    return DeviceError(f"GPU out of memory: {detail}; train with a smaller --batch-size, or use --device cpu")
