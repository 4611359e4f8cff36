import sys, time, statistics
sys.path.insert(0, "/work/main")
import numpy as np
from nn_gpu import parallel
from nn_gpu.device import cpu_device
from nn_gpu.model import Architecture, Network, init_parameters
hidden = tuple(int(h) for h in sys.argv[1].split(","))
arch = Architecture(hidden, "float32")
net = Network(arch, cpu_device(), init_parameters(arch, "he", np.random.default_rng(0)))
rng = np.random.default_rng(0); m = 41000
images = ((rng.random((m, 784)) < 0.2) * 200).astype(np.uint8); X = images.T; y = rng.integers(0, 10, m).astype(np.int32)
with parallel.one_blas_thread():
    for batch in (128, 256, 512):
        rows = rng.permutation(m)[:batch]; Xb = X.T[rows].T; yb = y[rows]
        res = {}
        for r in range(3):
            for bs in (1024, batch // 2, batch // 4):
                net.block_samples = bs
                net.gradients(Xb, yb)
                t = time.perf_counter(); n = 0
                while time.perf_counter() - t < 0.5:
                    net.gradients(Xb, yb); n += 1
                res.setdefault(bs, []).append(1000 * (time.perf_counter() - t) / n)
        print(hidden, batch, {k: round(statistics.median(v), 3) for k, v in res.items()}, flush=True)
