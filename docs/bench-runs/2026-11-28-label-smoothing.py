"""Experiment (not part of nn_gpu): does label smoothing help the ladder's best rungs? Patches the CPU
op table's softmax_cross_entropy so dZ = softmax(Z) - ((1 - eps) onehot(y) + eps / C), then runs the
rung's train.py command through nn_gpu.bench.ladder.run_nn_gpu for seeds 0-2, with eps 0 and 0.1."""
import sys
import numpy as np
from nn_gpu import cpu
from nn_gpu.bench import ladder

plain = cpu.CPU_OPS.softmax_cross_entropy


def smoothing(eps):
    def softmax_cross_entropy(Z, y):
        dZ, loss, correct = plain(Z, y)
        dZ[y, np.arange(Z.shape[1])] += eps
        dZ -= eps / Z.shape[0]
        return dZ, loss, correct
    return softmax_cross_entropy


source = sys.argv[1]
for number in map(int, sys.argv[2].split(",")):
    what, flags, _ = ladder.rungs(20)[number]
    flags = [*ladder.data_flags(source), *flags]
    for eps in (0.0, 0.1):
        cpu.CPU_OPS = cpu.CPU_OPS._replace(softmax_cross_entropy=smoothing(eps))
        acc = [ladder.run_nn_gpu(flags, seed)["accuracy"] for seed in range(3)]
        print(f"{source} rung {number} ({what}) label smoothing {eps}: {ladder.spread(acc)}", flush=True)
