"""A device made of NumPy arrays that refuse to be read on the host, and count the kernels a step launches.

On a GPU a training step is queued work: a CUDA graph can hold it only if no line of it waits for
the card (float(), bool(), .item(), .tolist(), a copy to the host), and its cost is the number of
kernels it launches. `guarded_device()` runs nn_gpu's step code on NumPy with both checks:

- DeviceArray, the arrays it makes, raises HostRead wherever Python would read device memory;
- every op-table call counts as one kernel (`Kernels.ops`), and so does every array operation made
  outside the op table (`Kernels.stray`): a ufunc, an xp function, a fancy index, a copy or a fill.
  Inside an op the arrays are plain NumPy again, because an op is one kernel, whatever it does.
"""

from __future__ import annotations

import dataclasses
import functools
from types import SimpleNamespace

import numpy as np

from nn_gpu.device import Device, WholeBatches


class HostRead(AssertionError):
    """A step read device memory on the host."""


KERNELS = SimpleNamespace(ops=[], stray=[], inside=False)  # what has been launched, and whether inside an op


def _count_stray(name: str) -> None:
    if not KERNELS.inside:
        KERNELS.stray.append(name)


def plain(value):
    """value with every DeviceArray in it (in tuples, lists and NamedTuples too) a plain ndarray view."""
    if isinstance(value, DeviceArray):
        return value.view(np.ndarray)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*map(plain, value))
    if isinstance(value, (tuple, list)):
        return type(value)(map(plain, value))
    return value


def guarded(value):
    """value with every ndarray in it a DeviceArray view (and a NumPy scalar a 0-d DeviceArray, as CuPy
    gives a 0-d device array where NumPy gives a scalar)."""
    if isinstance(value, np.generic):
        return np.array(value).view(DeviceArray)
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(DeviceArray)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(map(guarded, value))
    return value


class DeviceArray(np.ndarray):
    """An ndarray standing for device memory: reading it on the host raises HostRead."""

    def _refuse(self, *args, **kwargs):
        raise HostRead("a training step read device memory on the host")

    __float__ = __int__ = __index__ = __bool__ = __complex__ = item = tolist = tobytes = _refuse

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _count_stray(f"{ufunc.__name__}.{method}")
        if "out" in kwargs:
            kwargs["out"] = plain(kwargs["out"])
        result = getattr(ufunc, method)(*plain(inputs), **kwargs)
        return guarded(result)

    def __array_function__(self, func, types, args, kwargs):
        _count_stray(func.__name__)
        return guarded(func(*plain(args), **plain(kwargs)))

    def __getitem__(self, index):
        if any(isinstance(i, np.ndarray) for i in (index if isinstance(index, tuple) else (index,))):
            _count_stray("gather (fancy index)")
        return guarded(np.ndarray.__getitem__(self.view(np.ndarray), plain(index)))

    def __setitem__(self, index, value):
        _count_stray("setitem")
        np.ndarray.__setitem__(self.view(np.ndarray), plain(index), plain(value))

    def copy(self, *args, **kwargs):
        _count_stray("copy")
        return guarded(self.view(np.ndarray).copy(*args, **kwargs))

    def astype(self, dtype, *args, copy=True, **kwargs):
        if copy or np.dtype(dtype) != self.dtype:
            _count_stray("astype")
        return guarded(self.view(np.ndarray).astype(dtype, *args, copy=copy, **kwargs))

    def fill(self, value):
        _count_stray("fill")
        self.view(np.ndarray).fill(value)


class GuardedNumpy:
    """numpy as the array module of the guarded device: what it makes is a DeviceArray, and each call
    but an uninitialised allocation is a kernel."""

    ALLOCATIONS = {"empty", "empty_like"}

    def __getattr__(self, name):
        attribute = getattr(np, name)
        if not callable(attribute) or isinstance(attribute, type):
            return attribute

        @functools.wraps(attribute)
        def call(*args, **kwargs):
            if name not in self.ALLOCATIONS:
                _count_stray(f"xp.{name}")
            return guarded(attribute(*plain(args), **plain(kwargs)))

        return call


def counted(name: str, op):
    """op as one kernel: counted, and run on plain arrays."""

    @functools.wraps(op)
    def kernel(*args, **kwargs):
        KERNELS.ops.append(name)
        KERNELS.inside = True
        try:
            return guarded(op(*plain(args), **plain(kwargs)))
        finally:
            KERNELS.inside = False

    return kernel


@dataclasses.dataclass(frozen=True)
class GuardedDevice(Device):
    """The CPU's math with the GPU's rules: arrays that refuse host reads, ops counted as kernels."""

    def to_device(self, array):
        return array if isinstance(array, DeviceArray) else np.array(array).view(DeviceArray)

    def to_host(self, array):
        raise HostRead("a copy to the host")

    def upload(self, target, host):  # a copy queued on the device, as the GPU's: allowed, not a kernel
        target.view(np.ndarray)[...] = host


def guarded_device(ops) -> GuardedDevice:
    """A device running `ops` (an op table: the CPU's, say) under the rules above, a batch at a time (as the GPU)."""
    table = ops._replace(**{name: counted(name, getattr(ops, name)) for name in ops._fields})
    return GuardedDevice("cpu", GuardedNumpy(), table, runner=WholeBatches)


def reset() -> None:
    KERNELS.ops.clear()
    KERNELS.stray.clear()
