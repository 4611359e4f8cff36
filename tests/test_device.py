"""Resolving --device: the CPU always works; a GPU that cannot be had says which cause and the fix."""

import sys

import numpy as np
import pytest

from nn_gpu import device as device_module
from nn_gpu.device import gpu_unavailable_reason, out_of_memory_error, resolve_device
from nn_gpu.errors import DeviceError
from nn_gpu.ops import REFERENCE_OPS


def test_cpu_device_is_numpy_with_plain_ops():
    cpu = resolve_device("cpu")
    assert cpu.name == "cpu" and cpu.xp is np and cpu.ops is REFERENCE_OPS
    a = np.arange(3.0)
    assert cpu.to_device(a) is a and cpu.to_host(a) is a
    cpu.synchronize()
    assert cpu.describe().startswith("cpu (NumPy")


def test_unknown_device_name():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_cupy_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    reason = gpu_unavailable_reason()
    assert reason.startswith("CuPy not installed") and "pip install" in reason
    with pytest.raises(DeviceError, match="^--device gpu: CuPy not installed"):
        resolve_device("gpu")
    assert resolve_device("auto").name == "cpu"


class FakeRuntime:
    class CUDARuntimeError(RuntimeError):
        pass

    def __init__(self, driver, runtime=12090, devices=1):
        self.driver, self.runtime, self.devices = driver, runtime, devices

    def driverGetVersion(self):
        return self.driver

    def runtimeGetVersion(self):
        return self.runtime

    def getDeviceCount(self):
        if self.devices is None:
            raise self.CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        return self.devices


@pytest.mark.parametrize(
    ("runtime", "cause"),
    [
        (FakeRuntime(driver=0), "no CUDA device: no NVIDIA driver found"),
        (FakeRuntime(driver=11080), "driver too old: the NVIDIA driver supports CUDA 11.8, this CuPy needs 12"),
        (FakeRuntime(driver=12090, devices=None), "no CUDA device: cudaErrorNoDevice"),
        (FakeRuntime(driver=12090, devices=0), "no CUDA device: the driver sees no GPU"),
        (FakeRuntime(driver=12090), None),
    ],
)
def test_each_cause_of_an_unusable_gpu_is_named(monkeypatch, runtime, cause):
    fake_cupy = type(sys)("cupy")
    fake_cupy.cuda = type(sys)("cupy.cuda")
    fake_cupy.cuda.runtime = runtime
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    reason = device_module.gpu_unavailable_reason()
    if cause is None:
        assert reason is None
    else:
        assert reason.startswith(cause), reason


def test_out_of_memory_becomes_one_line_with_the_advice():
    OutOfMemoryError = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})
    error = out_of_memory_error(OutOfMemoryError("Out of memory allocating 1,024 bytes\n(allocated so far: 0 bytes)."))
    assert isinstance(error, DeviceError)
    assert str(error) == (
        "GPU out of memory: Out of memory allocating 1,024 bytes (allocated so far: 0 bytes); "
        "train with a smaller --batch-size, or use --device cpu"
    )
    assert out_of_memory_error(MemoryError("host")) is None
