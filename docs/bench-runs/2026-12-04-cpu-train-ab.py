"""train()'s seconds a step on the CPU, for the code in PYTHONPATH: run it on two checkouts in turn.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=CHECKOUT python docs/bench-runs/2026-12-04-cpu-train-ab.py LABEL [load]

Each workload trains from the same start (seed 0, synthetic digits of bench.py) through nn_gpu.train, the
loop train.py runs, with no logging until the end; the median of 3 runs, after a warm-up run. With
`load`, another process spins on one core throughout (nn_gpu.bench.timing.busy_core).
"""

import contextlib
import json
import statistics
import sys
import time

import numpy as np

import nn_gpu
from nn_gpu.bench.implementations import synthetic_digits
from nn_gpu.bench.timing import busy_core

WORKLOADS = [  # name, hidden, train keywords, iterations
    ("notebook job", (10,), {}, 20),
    ("mini-batch 128, hidden 10", (10,), {"batch_size": 128}, 400),
    ("mini-batch 128, hidden 128", (128,), {"batch_size": 128}, 400),
    ("full batch, hidden 128", (128,), {}, 6),
    ("full batch, hidden 256,128", (256, 128), {}, 4),
    ("best recipe (1024,1024 adamw dropout .2/.5)", (1024, 1024),
     {"batch_size": 128, "optimizer": "adamw", "alpha": 1e-3, "weight_decay": 0.01, "lr_schedule": "cosine",
      "dropout": (0.2, 0.5)}, 40),
]


def seconds_per_step(hidden, keywords, iterations, images, labels):
    times = []
    for _ in range(4):
        net = nn_gpu.Network.create(hidden=hidden, device="cpu", seed=0)
        progress = nn_gpu.train(net, images.T, labels, iterations=iterations, log_interval=0, log=None, **keywords)
        times.append(progress.train_seconds / iterations)
    return statistics.median(times[1:])


def main():
    label = sys.argv[1]
    images, labels = synthetic_digits(41000)
    rows = []
    with busy_core() if "load" in sys.argv[2:] else contextlib.nullcontext():
        for name, hidden, keywords, iterations in WORKLOADS:
            time.sleep(1)
            ms = 1000 * seconds_per_step(hidden, keywords, iterations, images, labels)
            rows.append({"workload": name, "code": label, "ms_per_step": ms})
            print(f"{label}\t{name}\t{ms:.3f} ms", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
