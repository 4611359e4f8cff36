"""Idle A/B in one process: a mini-batch step with BLAS on one thread (now) or on its own 2 threads (before),
alternating, each after a 1 s settle (as bench.py's time_steps), 10 rounds; medians of ms per step."""
import sys, time, statistics
sys.path.insert(0, "/work/main")
import numpy as np
from threadpoolctl import threadpool_limits
from nn_gpu import parallel
from nn_gpu.device import cpu_device
from nn_gpu.model import Architecture, Network, init_parameters
from nn_gpu.optim import SGD
rng = np.random.default_rng(0); m = 41000
images = ((rng.random((m, 784)) < 0.2) * 200).astype(np.uint8); X = images.T; y = rng.integers(0, 10, m).astype(np.int32)
order = rng.permutation(m)
for hidden in [(10,), (128,)]:
    arch = Architecture(hidden, "float32")
    net = Network(arch, cpu_device(), init_parameters(arch, "he", np.random.default_rng(0))); opt = SGD(net)
    res = {"one": [], "blas2": []}
    for r in range(10):
        for mode in res:
            time.sleep(1.0)
            ctx = parallel.one_blas_thread() if mode == "one" else threadpool_limits(2, "blas")
            with ctx:
                n = 0; t = time.perf_counter()
                while n < 1000:
                    s = (n * 128) % (m - 128); rows = order[s:s + 128]
                    net._sum_gradients(X.T[rows].T, y[rows], net.grads); net.flat_grad /= 128; opt.step(0.001); n += 1
                res[mode].append(1000 * (time.perf_counter() - t) / n)
    print(hidden, {k: (round(statistics.median(v), 3), [round(x, 3) for x in v]) for k, v in res.items()}, flush=True)
