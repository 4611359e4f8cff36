"""The dropout masks of the best recipe (784, 1024, 1024 inputs to mask, batch 128), drawn and applied as before
2026-12-04 (old) and as now (new): for callgrind, and for timeit in one process.

    PYTHONPATH=. valgrind --tool=callgrind python docs/bench-runs/2026-12-04-masks.py old|new STEPS
"""
import sys
import numpy as np
from nn_gpu import dropout
m = 128
layers = ((0.2, 784), (0.5, 1024), (0.5, 1024))
rng0 = np.random.default_rng(0)
Zs = [rng0.standard_normal((h, m)).astype(np.float32) for p, h in layers]
dAs = [rng0.standard_normal((h, m)).astype(np.float32) for p, h in layers]
def old(t):  # dropout.masks before 2026-12-04, and the two multiplies a step made with each mask
    rng = np.random.default_rng([0, 1, t])
    for (p, h), Z, dA in zip(layers, Zs, dAs):
        kept = rng.random((h, m), dtype=np.float32) >= p
        M = kept.astype(np.float32) / np.asarray(1 - p, np.float32)
        A = Z.copy(); A *= M          # forward
        d = dA.copy(); d *= M         # backward
def new(t):  # the masks drawn in the ops, applied as they are drawn; the backward multiply by s
    for l, ((p, h), Z, dA) in enumerate(zip(layers, Zs, dAs)):
        s = np.asarray(1, np.float32) / np.asarray(1 - p, np.float32)
        draw = dropout.Draw(dropout.key(0, l), dropout.threshold(p), s, np.array([t - 1]), 0, m)
        A = Z.copy(); A *= draw.scale; A *= draw.kept(h, m)   # forward
        d = dA.copy(); d *= s                                 # backward
f = {"old": old, "new": new}[sys.argv[1]]
for t in range(1, int(sys.argv[2]) + 1):
    f(t)
