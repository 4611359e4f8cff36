"""Where a graphed step's time goes on the card: the floor of a graph node, and each perf job's graph
replayed alone (device time, no host work) against step.run as bench.py --perf times it.

    PYTHONPATH=. python docs/gpu-runs/2026-12-04-H200/floor.py
"""

import time

import cupy as cp

from nn_gpu.bench.implementations import synthetic_digits
from nn_gpu.bench.perf import JOBS, M, build, graph_nodes
from nn_gpu.device import resolve_device
from nn_gpu.step import STEPS_PER_GRAPH


def device_us(launch, times: int) -> float:
    """Microseconds of device time per call of launch(), by CUDA events around `times` calls."""
    launch()
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    started = time.perf_counter()
    start.record()
    for _ in range(times):
        launch()
    end.record()
    host = (time.perf_counter() - started) * 1e6 / times
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) * 1000 / times, host


empty = cp.RawKernel(r'extern "C" __global__ void nn_empty(float* x) { if (x[0] == 1.0f) x[0] = 2.0f; }', "nn_empty")
x = cp.zeros(1, cp.float32)
for n in (1, 11, 176):
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        for _ in range(n):
            empty((1,), (32,), (x,))
        graph = stream.end_capture()
        dev, host = device_us(graph.launch, 200)
    print(
        f"graph of {n:3d} one-block kernels: {dev:8.2f} us a replay, {dev / n:6.2f} us a node; host {host:6.2f} us a launch"
    )
dev, host = device_us(lambda: empty((1,), (32,), (x,)), 2000)
print(f"one-block kernel launched from Python: device {dev:.2f} us, host {host:.2f} us a launch")

device = resolve_device("gpu")
images, labels = synthetic_digits(M, seed=0)
for job in JOBS:
    _, _, step = build(device, job, images, labels, 20 + 400, True)
    step.run(1, 20)
    count = step.count(21)
    for steps in (1, STEPS_PER_GRAPH):
        graph = step.graphs[count, steps]
        dev, host = device_us(graph.launch, 20 if steps == 1 else 10)  # inside the epoch: 20 + 21 + 11 x 16 < 320
        print(
            f"{job}: {steps:2d}-step graph {dev / steps:8.2f} us a step on the device, host {host:.1f} us a launch; nodes {dict(graph_nodes(graph))}"
        )
    _, _, step = build(device, job, images, labels, 20 + 400, True)  # a fresh start: run checks the steps done
    step.run(1, 20)
    runs = iter([(21, 160), (161, 300)])
    dev, host = device_us(lambda step=step, runs=runs: step.run(*next(runs)), 1)
    print(f"{job}: step.run of 140 steps {dev / 140:8.2f} us a step (events), host {host / 140:.1f} us a step")
