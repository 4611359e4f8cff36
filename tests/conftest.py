"""The GPU marker's skip, unit tests first, and the device fixtures; shared helpers are in helpers.py."""

from __future__ import annotations

import os

import pytest

from nn_gpu.device import cpu_device, gpu_unavailable_reason, resolve_device


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: "slow" in item.keywords)  # unit tests first: a failure there shows in seconds
    gpu_items = [item for item in items if "gpu" in item.keywords]
    reason = gpu_unavailable_reason() if gpu_items else None
    if reason is None:
        return
    if os.environ.get("NN_GPU_REQUIRE_GPU") == "1":  # scripts/gpu_check.sh: a skip would hide a broken GPU
        raise pytest.UsageError(f"NN_GPU_REQUIRE_GPU=1 but no usable GPU: {reason}")
    skip = pytest.mark.skip(reason=f"no usable GPU: {reason}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def cpu():
    return cpu_device()


@pytest.fixture
def gpu():
    return resolve_device("gpu")
