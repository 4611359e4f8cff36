"""Time of each op-table call in an eager step on the card: every op bracketed by CUDA events, 40 steps
after 20 of warm-up, per perf job. The queue is empty in an eager step, so this is mostly the host's
time to launch the op (Python, CuPy, the ctypes cuBLAS call), not the kernel's.

    PYTHONPATH=. python docs/gpu-runs/2026-12-04-H200/ops_time.py
"""

import dataclasses
from collections import defaultdict

import cupy as cp

from nn_gpu.bench.implementations import synthetic_digits
from nn_gpu.bench.perf import JOBS, M, build
from nn_gpu.device import resolve_device

pairs = []


def timed(name, op):
    def call(*args, **kwargs):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        result = op(*args, **kwargs)
        end.record()
        pairs.append((name, start, end))
        return result

    return call


gpu = resolve_device("gpu")
ops = gpu.ops._replace(**{name: timed(name, op) for name, op in gpu.ops._asdict().items()})
device = dataclasses.replace(gpu, ops=ops)
images, labels = synthetic_digits(M, seed=0)
for job in JOBS:
    _, _, step = build(device, job, images, labels, 60, False)
    step.run(1, 20)
    cp.cuda.Device().synchronize()
    pairs.clear()
    step.run(21, 60)
    cp.cuda.Device().synchronize()
    totals, calls = defaultdict(float), defaultdict(int)
    for name, start, end in pairs:
        totals[name] += cp.cuda.get_elapsed_time(start, end) * 1000 / 40
        calls[name] += 1
    shown = ", ".join(f"{n} {t:.1f} us ({calls[n] // 40}x)" for n, t in sorted(totals.items(), key=lambda kv: -kv[1]))
    print(f"{job}: {sum(totals.values()):.1f} us a step in ops: {shown}")
