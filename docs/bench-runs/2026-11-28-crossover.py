# Where threads pay: each batch size timed as one block (BLAS threaded or on one thread) and as blocks on 2 threads.
# Written against commit 40f17da (network.block_samples set per mode); kept as run for the record.
import os, sys, time, statistics, multiprocessing as mp
sys.path.insert(0, "/work/main")
import numpy as np
from threadpoolctl import threadpool_limits
from nn_gpu.device import cpu_device
from nn_gpu.model import Architecture, Network, init_parameters
from nn_gpu.optim import SGD

def busy(stop_at):
    os.sched_setaffinity(0, {0})
    while time.time() < stop_at:
        pass

rng = np.random.default_rng(0); m = 41000
images = ((rng.random((m, 784)) < 0.2) * 200).astype(np.uint8); X = images.T; y = rng.integers(0, 10, m).astype(np.int32)
order = rng.permutation(m)
nets = {}
def run(hidden, batch, mode, seconds=0.25):
    if hidden not in nets:
        arch = Architecture(hidden, "float32")
        net = Network(arch, cpu_device(), init_parameters(arch, "he", np.random.default_rng(0)))
        nets[hidden] = (net, SGD(net))
    net, opt = nets[hidden]
    lim = None
    if mode == "blas2":
        net.block_samples = 1 << 30
    elif mode == "one":
        net.block_samples = 1 << 30; lim = threadpool_limits(1, "blas")
    else:
        net.block_samples = int(mode[1:])
    n = 0; t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        s = (n * batch) % (m - batch)
        rows = order[s:s + batch]
        net.gradients(X.T[rows].T, y[rows]); opt.step(0.001); n += 1
    el = time.perf_counter() - t
    if lim: lim.restore_original_limits()
    return 1000 * el / n

if __name__ == "__main__":
    p = None
    if sys.argv[1] == "load":
        p = mp.Process(target=busy, args=(time.time() + 900,)); p.start()
    try:
        for hidden in [(10,), (128,)]:
            for batch in [128, 256, 512, 1024, 2048, 4096]:
                modes = ["blas2", "one"] + [f"b{b}" for b in (256, 512, 1024) if b < batch]
                res = {k: [] for k in modes}
                for r in range(5):
                    for k in modes:
                        res[k].append(run(hidden, batch, k))
                print(sys.argv[1], hidden, batch, " ".join(f"{k}={statistics.median(v):.3f}" for k, v in res.items()), flush=True)
    finally:
        if p: p.terminate()
