"""A fused training step on the GPU for the notebook's shape of network: 784 -> H ReLU -> 10, H in FUSED_HIDDEN.

The plain path (nn_gpu.model with the kernels of nn_gpu.kernels) launches a dozen kernels and cuBLAS
calls a step and keeps X as float32. This path keeps X as uint8 on the device (scaled by 1/255 inside
the kernels) and runs a step as two kernels (FUSED_SOURCE in nn_gpu/fused_source.py), replayed as
a CUDA graph: a persistent grid that reads each image once and leaves one row of partial sums per
block, then the update, which adds the rows in a fixed order. No float atomics: the same step gives
the same bits every time. It computes what Network.gradients then the optimiser's update compute
(SGD with momentum and weight decay, Adam, AdamW), with each step's learning rate and Adam's
corrections read from a schedule table on the device (nn_gpu.optim.ScheduleTable).

Status: compiled by NVRTC in CI for sm_90, sm_80, sm_75 (and sm_60 where NVRTC still has it) with no
stack frame and no spills, and its kernels run on the host, thread by thread, against the network
(tests/test_cuda_host.py). Used by scripts/bench.py only; scripts/gpu_check.sh holds it to the plain
path and to itself, bit for bit, on a card.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from nn_gpu.cuda_source import CUDA_SOURCE, LAST_BLOCK_SOURCE
from nn_gpu.fused_source import (
    FUSED_BUILDS,
    FUSED_HIDDEN,
    FUSED_OPTIONS,
    FUSED_SOURCE,
    SUFFIXES,
    fused_launch,
    partials_kernel,
)
from nn_gpu.model import Network
from nn_gpu.optim import SGD, Adam, ScheduleTable
from nn_gpu.shapes import N_CLASSES, N_PIXELS
from nn_gpu.step import SCHEDULE_WINDOW

_module = cp.RawModule(code=CUDA_SOURCE + LAST_BLOCK_SOURCE + FUSED_SOURCE, options=FUSED_OPTIONS)
ENDLESS = 2**62  # the length of a constant schedule with no end


def supports(network: Network) -> bool:
    """Whether the fused step can train this network: 784 inputs, one hidden layer of a size built
    (FUSED_HIDDEN), no batch norm and 10 classes, on the GPU; any other goes the plain path."""
    arch = network.arch
    digits = (arch.n_inputs, arch.n_classes) == (N_PIXELS, N_CLASSES)
    one_layer = len(arch.hidden) == 1 and arch.hidden[0] in FUSED_HIDDEN[arch.dtype] and not arch.batch_norm
    return network.device.name == "gpu" and digits and one_layer


class FusedStep:
    """Training steps for `network` and `optimizer` (SGD or Adam) on uint8 images (m x 784) and labels
    (m), on the GPU, at the learning rates of `schedule` from `alpha` over `total` steps (None: a
    constant rate, for as long as it runs), with the partial-sums kernel's build `variant`
    (FUSED_BUILDS: "" is each H's own, "ahead" another of H = 10, for the benchmark).

    step(order) does what network.gradients(X[:, order], y[order]) then the optimiser's update do,
    whatever network.flat_grad held before: afterwards flat_grad holds the step's mean gradient, as
    after network.gradients. The loss and correct-prediction sums of the steps so far are read (and
    reset) by take_sums().
    """

    def __init__(
        self,
        network: Network,
        optimizer: SGD | Adam,
        images,
        labels,
        schedule: str = "constant",
        alpha: float = 0.1,
        total: int | None = None,
        use_graph: bool = True,
        variant: str = "",
    ):
        if not supports(network):
            sizes = {dtype: ", ".join(map(str, hidden)) for dtype, hidden in FUSED_HIDDEN.items()}
            raise ValueError(
                f"the fused step needs 784 inputs, one hidden layer of {sizes['float32']} units ({sizes['float64']} "
                "in float64) without batch norm, and 10 classes, on the GPU"
            )
        dtype, hidden = network.arch.dtype, network.arch.hidden[0]
        if (dtype, hidden, variant) not in FUSED_BUILDS:
            raise ValueError(f"the fused step has no build {variant!r} for H = {hidden} in {dtype}")
        suffix, self.blocks_per_sm = SUFFIXES[dtype], FUSED_BUILDS[dtype, hidden, variant][1]
        self._partials = _module.get_function(partials_kernel(dtype, hidden, variant))
        self._update = _module.get_function(f"nn_tile_{'adam' if isinstance(optimizer, Adam) else 'sgd'}_{suffix}")
        self.network, self.optimizer, self.use_graph, self.hidden = network, optimizer, use_graph, hidden
        self.scalar = np.dtype(network.arch.dtype).type
        self.sms = cp.cuda.Device().attributes["MultiProcessorCount"]
        self.X = cp.ascontiguousarray(cp.asarray(images, dtype=cp.uint8))  # m x 784, stays uint8
        self.y = cp.asarray(labels, dtype=cp.int32)
        self.table = ScheduleTable(optimizer, schedule, alpha, total or ENDLESS, SCHEDULE_WINDOW)
        self.steps = optimizer.steps  # taken before: the next step is steps + 1 (Adam's corrections)
        self.done = cp.array([self.steps], dtype=cp.int64)  # the update counts each step done on the device
        self.sums = cp.zeros(2, dtype=cp.float64)  # loss, correct since the last take_sums()
        self.arrived = cp.zeros(1, dtype=cp.uint32)  # the update's count of finished blocks; it resets it
        self._buffers: dict[tuple[int, bool], dict] = {}  # (count, all samples?) -> order, partials, graph
        self._stream = cp.cuda.Stream(non_blocking=True)

    def step(self, order=None) -> None:
        """One step on the samples `order` (a device int64 array), or on all of them in their order.

        The first step of each batch size launches the kernels directly (loading them); later ones
        replay a CUDA graph captured from the same launches.
        """
        self.table.load(self.steps + 1)  # a window of the schedule, uploaded once every SCHEDULE_WINDOW steps
        buffers = self._prepare(len(self.y) if order is None else len(order), order is None)
        if order is not None:
            buffers["order"][...] = order
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
        self.steps += 1

    def take_sums(self) -> tuple[float, float]:
        """(loss sum, correct sum) over the samples of the steps since the last call; synchronises."""
        loss, correct = (float(v) for v in self.sums.get())
        self.sums.fill(0)
        return loss, correct

    def _prepare(self, count: int, all_samples: bool) -> dict:
        """The preallocated buffers (and, once captured, the graph) for steps on `count` samples. A step
        on all samples passes no order (the kernel reads sample s for s); one on given samples has an
        order buffer of its own."""
        key = (count, all_samples)
        if key not in self._buffers:
            launch = fused_launch(count, self.hidden, self.sms, self.blocks_per_sm)
            blocks = launch["partials"][0]
            self._buffers[key] = {
                "order": None if all_samples else cp.empty(count, dtype=cp.int64),
                "count": count,
                "launch": launch,
                "partials": cp.empty((blocks, launch["entries"]), dtype=self.network.arch.dtype),
                "graph": None,
                "warm": False,
            }
        return self._buffers[key]

    def _launch(self, buffers: dict) -> None:
        net, opt, T, launch = self.network, self.optimizer, self.scalar, buffers["launch"]
        count, partials = np.int64(buffers["count"]), buffers["partials"]
        order = np.uint64(0) if buffers["order"] is None else buffers["order"]  # a null pointer: samples in order
        blocks, threads = launch["partials"]
        self._partials((blocks,), (threads,), (self.X, self.y, order, count, net.flat, partials))
        head = (partials, np.int32(blocks), np.int64(launch["entries"]), count, net.flat, net.flat_grad)
        table = (self.table.rows, np.int64(self.table.window), self.done)
        tail = (self.sums, self.arrived)
        if isinstance(opt, Adam):
            l2 = 0.0 if opt.decoupled else opt.weight_decay
            scalars = (T(opt.betas[0]), T(opt.betas[1]), T(opt.eps), T(l2))
            arguments = (*head, opt.m, opt.v, *table, *scalars, *tail)
        else:
            arguments = (*head, opt.velocity, *table, T(opt.momentum), T(opt.weight_decay), *tail)
        blocks, threads = launch["reduce"]
        self._update((blocks,), (threads,), arguments)
