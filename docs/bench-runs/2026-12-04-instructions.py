"""Train N steps on the CPU (nn_gpu in PYTHONPATH): for counting instructions with callgrind, N twice.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=CHECKOUT valgrind --tool=callgrind python docs/bench-runs/2026-12-04-instructions.py N HIDDEN BATCH
"""
import sys
import numpy as np
import nn_gpu
from nn_gpu.bench.implementations import synthetic_digits
hidden = tuple(int(h) for h in sys.argv[2].split(","))
batch = int(sys.argv[3])
images, labels = synthetic_digits(8192)
net = nn_gpu.Network.create(hidden=hidden, device="cpu", seed=0)
nn_gpu.train(net, images.T, labels, iterations=int(sys.argv[1]), batch_size=batch, log_interval=0, log=None)
