"""Resolving --device: the CPU always works; a GPU that cannot be had says which cause and the fix."""

import re
import sys

import numpy as np
import pytest
from helpers import cupy_or_skip

from nn_gpu import cpu as cpu_module
from nn_gpu import device as device_module
from nn_gpu.device import gpu_unavailable_reason, out_of_memory_error, parse_device, resolve_device
from nn_gpu.errors import DeviceError
from nn_gpu.ops import REFERENCE_OPS


def test_cpu_device_is_numpy_with_plain_ops_and_blocks():
    cpu = resolve_device("cpu")
    assert cpu.name == "cpu" and cpu.xp is np
    assert cpu.ops == REFERENCE_OPS._replace(product=cpu_module.product)  # the plain ops; W A in OpenBLAS's layout
    assert isinstance(cpu.runner(), cpu_module.Blocks)
    a = np.arange(3.0)
    assert cpu.to_device(a) is a and cpu.to_host(a) is a
    cpu.synchronize()
    assert cpu.describe().startswith("cpu (NumPy")


def test_unknown_device_name():
    with pytest.raises(DeviceError, match="unknown device 'tpu': choose auto, cpu, gpu or gpu:N"):
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


@pytest.fixture
def fake_cupy(monkeypatch):
    """Install a fake `cupy` whose runtime reports the versions and devices a test gives it."""

    def install(runtime):
        cupy = type(sys)("cupy")
        cupy.cuda = type(sys)("cupy.cuda")
        cupy.cuda.runtime = runtime
        monkeypatch.setitem(sys.modules, "cupy", cupy)

    return install


@pytest.mark.parametrize(
    ("runtime", "cause"),
    [
        (FakeRuntime(driver=0), "no CUDA device: no NVIDIA driver found"),
        (
            FakeRuntime(driver=11080, runtime=12090),
            "driver too old: the NVIDIA driver supports CUDA 11.8, this CuPy is built for CUDA 12.9 and needs a "
            "driver for CUDA 12; update the driver, or install the CuPy build for CUDA 11: pip install cupy-cuda11x",
        ),
        (
            FakeRuntime(driver=12080, runtime=13020),
            "driver too old: the NVIDIA driver supports CUDA 12.8, this CuPy is built for CUDA 13.2 and needs a "
            "driver for CUDA 13; update the driver, or install the CuPy build for CUDA 12: pip install cupy-cuda12x",
        ),
        (FakeRuntime(driver=12090, devices=None), "no CUDA device: cudaErrorNoDevice"),
        (FakeRuntime(driver=12090, devices=0), "no CUDA device: the driver sees no GPU"),
        (FakeRuntime(driver=12090), None),
        # CUDA's minor-version compatibility: an H200's driver 580 (CUDA 13.0) runs cupy-cuda13x 14.2 (13.2).
        (FakeRuntime(driver=13000, runtime=13020), None),
        (FakeRuntime(driver=12020, runtime=12090), None),
        (FakeRuntime(driver=13000, runtime=12090), None),  # a newer driver runs an older runtime
    ],
)
def test_each_cause_of_an_unusable_gpu_is_named(fake_cupy, runtime, cause):
    fake_cupy(runtime)
    reason = device_module.gpu_unavailable_reason()
    if cause is None:
        assert reason is None
    else:
        assert reason.startswith(cause), reason
        with pytest.raises(DeviceError, match=f"^--device gpu:1: {re.escape(reason)}$"):
            resolve_device("gpu:1")
        assert resolve_device("auto").name == "cpu"


@pytest.mark.parametrize(
    ("devices", "name", "message"),
    [
        (1, "gpu:1", "--device gpu:1: no such card: the driver sees 1 GPU (gpu:0)"),
        (2, "gpu:7", "--device gpu:7: no such card: the driver sees 2 GPUs (gpu:0 to gpu:1)"),
    ],
)
def test_a_card_number_that_does_not_exist_names_the_cards_seen(fake_cupy, devices, name, message):
    fake_cupy(FakeRuntime(driver=13000, runtime=13020, devices=devices))
    with pytest.raises(DeviceError, match=f"^{re.escape(message)}$"):
        resolve_device(name)


@pytest.mark.parametrize(
    ("name", "parsed"), [("cpu", ("cpu", None)), ("auto", ("auto", 0)), ("gpu", ("gpu", 0)), ("gpu:3", ("gpu", 3))]
)
def test_device_names_parse(name, parsed):
    assert parse_device(name) == parsed


@pytest.mark.parametrize("name", ["gpu:", "gpu:-1", "gpu:x", "cuda", "gpu0", " gpu", "GPU"])
def test_malformed_device_names_are_refused(name):
    with pytest.raises(DeviceError, match=f"^unknown device {re.escape(repr(name))}: choose auto, cpu, gpu or gpu:N$"):
        parse_device(name)


def test_out_of_memory_becomes_one_line_with_the_advice():
    cupy = cupy_or_skip()
    error = out_of_memory_error(cupy.cuda.memory.OutOfMemoryError(1024, 0, 4096))  # CuPy's own, as a card raises it
    assert isinstance(error, DeviceError)
    assert str(error) == (
        "GPU out of memory: Out of memory allocating 1,024 bytes (allocated so far: 0 bytes, "
        "limit set to: 4,096 bytes); train with a smaller --batch-size, or use --device cpu"
    )
    assert out_of_memory_error(MemoryError("host")) is None  # the host's memory: not the GPU's advice
    impostor = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})
    assert out_of_memory_error(impostor("not CuPy's")) is None


def test_the_commands_give_cupys_out_of_memory_the_gpu_advice(capsys):
    from nn_gpu.commands.toolkit import run_main

    cupy = cupy_or_skip()

    def main(argv):
        raise cupy.cuda.memory.OutOfMemoryError(1024, 0, 4096)  # a MemoryError too in CuPy 14

    assert run_main(main, []) == 2
    assert capsys.readouterr().err == (
        "error: GPU out of memory: Out of memory allocating 1,024 bytes (allocated so far: 0 bytes, "
        "limit set to: 4,096 bytes); train with a smaller --batch-size, or use --device cpu\n"
    )
