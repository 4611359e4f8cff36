"""A fused training step on the GPU for the notebook's shape of network: 784 -> H ReLU -> 10, H <= 32.

The plain path (nn_gpu.model with the kernels of nn_gpu.kernels) launches some twenty kernels and
cuBLAS calls per step, and keeps X as float32. This path keeps X as uint8 on the device (scaled by
1/255 inside the kernels) and runs a step as three kernels (see FUSED_SOURCE in
nn_gpu/fused_source.py), replayed as one CUDA graph. It computes the same equations as
Network.gradients followed by SGD.step, and tests/test_gpu.py holds it to the plain path.

Status: compiled by NVRTC in CI for sm_90, sm_80, sm_75 and sm_60 within ptxas' limits, and equal to
the plain path on an H200 (scripts/gpu_check.sh, docs/gpu-runs/). Used by scripts/bench.py only:
it is faster than the plain path for small batches and slower for the notebook's full batch
(docs/benchmarks.md).
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from nn_gpu.cuda_source import CUDA_SOURCE
from nn_gpu.fused_source import FUSED_MAX_HIDDEN, FUSED_OPTIONS, FUSED_SOURCE, fused_launch
from nn_gpu.model import Network
from nn_gpu.optim import SGD
from nn_gpu.shapes import N_CLASSES, N_PIXELS

_module = cp.RawModule(code=CUDA_SOURCE + FUSED_SOURCE, options=FUSED_OPTIONS)


def supports(network: Network) -> bool:
    """Whether the fused step can train this network: 784 inputs, one hidden layer of at most 32 units
    and 10 classes (the kernels' NN_PIXELS and NN_CLASSES are compiled in), on the GPU; any other goes
    the plain path."""
    arch = network.arch
    digits = (arch.n_inputs, arch.n_classes) == (N_PIXELS, N_CLASSES)
    return network.device.name == "gpu" and digits and len(arch.hidden) == 1 and arch.hidden[0] <= FUSED_MAX_HIDDEN


class FusedStep:
    """Steps of SGD for `network` and `optimizer` on uint8 images (m x 784) and labels (m), on the GPU.

    step(lr, rows) does what network.gradients(X[:, rows], y[rows]) then optimizer.step(lr) do,
    whatever network.flat_grad held before: afterwards flat_grad holds the step's mean gradient, as
    after network.gradients. The loss and correct-prediction sums of the steps so far are read (and
    reset) by take_sums().
    """

    def __init__(self, network: Network, optimizer: SGD, images, labels, use_graph: bool = True):
        if not supports(network):
            raise ValueError(
                f"the fused step needs 784 inputs, one hidden layer of at most {FUSED_MAX_HIDDEN} units and 10 "
                "classes, on the GPU"
            )
        suffix = {"float32": "f32", "float64": "f64"}[network.arch.dtype]
        self._forward_backward = _module.get_function(f"nn_fused_forward_backward_{suffix}")
        self._weight_gradient = _module.get_function(f"nn_fused_weight_gradient_{suffix}")
        self._update = _module.get_function(f"nn_fused_update_{suffix}")
        self.network, self.optimizer, self.use_graph = network, optimizer, use_graph
        self.scalar = np.dtype(network.arch.dtype).type
        self.hidden = network.arch.hidden[0]
        self.sms = cp.cuda.Device().attributes["MultiProcessorCount"]
        self.X = cp.ascontiguousarray(cp.asarray(images, dtype=cp.uint8))  # m x 784, stays uint8
        self.y = cp.asarray(labels, dtype=cp.int32)
        self.all_rows = cp.arange(len(self.y), dtype=cp.int64)  # read, never written
        self.lr = cp.zeros(1, dtype=network.arch.dtype)  # read by the update kernel: schedules need no new graph
        self.sums = cp.zeros(2, dtype=network.arch.dtype)  # loss, correct since the last take_sums()
        self._buffers: dict[tuple[int, bool], dict] = {}  # (count, all samples?) -> rows, dZ1, graph
        self._stream = cp.cuda.Stream(non_blocking=True)

    def step(self, lr: float, rows=None) -> None:
        """One step on the samples `rows` (a device int64 array), or on all of them.

        The first step of each batch size launches the kernels directly (loading and warming them);
        later ones replay a CUDA graph captured from the same launches.
        """
        buffers = self._prepare(len(self.y) if rows is None else len(rows), rows is None)
        self.lr.fill(lr)
        if rows is not None:
            buffers["rows"][...] = rows
        if buffers["graph"] is None and self.use_graph and buffers["warm"]:
            cp.cuda.get_current_stream().synchronize()
            with self._stream:
                self._stream.begin_capture()
                self._launch(buffers)
                buffers["graph"] = self._stream.end_capture()
        if buffers["graph"] is not None:
            buffers["graph"].launch()
        else:
            self._launch(buffers)
            buffers["warm"] = True

    def take_sums(self) -> tuple[float, float]:
        """(loss sum, correct sum) over the samples of the steps since the last call; synchronises."""
        loss, correct = (float(v) for v in self.sums.get())
        self.sums.fill(0)
        return loss, correct

    def _prepare(self, count: int, all_samples: bool) -> dict:
        """The preallocated buffers (and, once captured, the graph) for steps on `count` samples.

        A step on all samples reads all_rows; a step on given rows has a buffer of its own, even when
        they are all the samples in another order, so all_rows is never overwritten.
        """
        key = (count, all_samples)
        if key not in self._buffers:
            self._buffers[key] = {
                "rows": self.all_rows if all_samples else cp.empty(count, dtype=cp.int64),
                "count": count,
                "dZ1": cp.empty((self.hidden, count), dtype=self.network.arch.dtype),
                "launch": fused_launch(count, self.hidden, self.sms, self.network.flat.size),
                "graph": None,
                "warm": False,
            }
        return self._buffers[key]

    def _launch(self, buffers: dict) -> None:
        net, opt, T = self.network, self.optimizer, self.scalar
        rows, dZ1, count, launch = buffers["rows"], buffers["dZ1"], buffers["count"], buffers["launch"]
        net.flat_grad.fill(0)  # the kernels add into it
        blocks, threads = launch["forward_backward"]
        self._forward_backward(
            (blocks,),
            (threads,),
            (self.X, self.y, rows, np.int32(count), net.flat, np.int32(self.hidden), dZ1, net.flat_grad, self.sums),
        )
        grid, threads, chunk = launch["weight_gradient"]
        self._weight_gradient(
            grid,
            (threads,),
            (self.X, rows, np.int32(count), np.int32(self.hidden), np.int32(chunk), dZ1, net.flat_grad),
        )
        blocks, threads = launch["update"]
        self._update(
            (blocks,),
            (threads,),
            (
                net.flat,
                net.flat_grad,
                opt.velocity,
                np.int64(net.flat.size),
                self.lr,
                T(1 / count),
                T(opt.momentum),
                T(opt.weight_decay),
            ),
        )
