"""A training step as device work alone, and on the GPU as a CUDA graph replayed step after step.

One step t takes its batch, runs forward and backward (Network.sum_gradients) and updates the
parameters (the optimiser's update): op calls, one kernel each on the GPU. Whatever changes from
step to step is read by those kernels from device memory, never handed over by the host:

    done    int64 (1,)      the steps completed; the step running is t = done + 1, and its update
                            counts it (the update's last block adds 1)
    order   int64 (m,)      the epoch's shuffle (nn_gpu.training.epoch_order), uploaded once an
                            epoch; step t's batch is order[((t - 1) mod B) b : ... + b]
    rows    T (W x k)       the optimiser's scalars of each step (learning rate; Adam's corrections
                            and AdamW's shrink), row (t - 1) mod W (nn_gpu.optim.ScheduleTable)
    sums    float64 (2,)    the loss and correct predictions summed since the last log (a resumed
                            run starts from the checkpoint's, so the additions are the same)
    masks                   drawn inside the kernels from (seed, t, layer, element) (nn_gpu.dropout)

So the host only queues work, and reads back at log, save and stop points. The GPU runs the step as
a CUDA graph: the first step of each batch size runs eagerly (CuPy compiles its kernels, cuBLAS sets
itself up), then that step is captured once as a graph of one step and once as one of
STEPS_PER_GRAPH steps, and a run of K steps replays them. The graphs are exactly the eager step's
kernels with the eager step's arguments, so a graphed run gives the eager run's bits.

CuPy has no graph-private memory pool: an array freed after capture would return to CuPy's pool,
be handed to someone else, and be overwritten while the graph still uses it. So every allocation
made while capturing comes from a pool of this step's own (`GraphMemory`), which nothing else
allocates from and which lives as long as the graphs: temporaries freed inside the capture are
reused inside it, which is safe because a graph's kernels run one after another on one stream.
Nothing in a step may touch the host: CuPy refuses host transfers during a capture, and the tests
run the step on arrays that refuse them (tests/test_step.py).

With --augment the distortions are drawn on the host each step, so those runs stay eager.
"""

from __future__ import annotations

import contextlib

import numpy as np

from nn_gpu import augment, averaging, dropout
from nn_gpu.optim import ScheduleTable, learning_rate

STEPS_PER_GRAPH = 16  # steps in the longer graph: a run of K steps is K // 16 launches of it, then single steps
SCHEDULE_WINDOW = 4096  # steps of optimiser scalars on the device at a time


def epoch_order(m: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle of epoch `epoch`: a permutation of m drawn from (seed, epoch) alone, so resuming needs no RNG state."""
    return np.random.default_rng([seed, epoch]).permutation(m)


class TrainingStep:
    """Steps of `plan` for `network` and `optimizer` on X (n0 x m) and y (m), on the network's device,
    continuing after `done` steps whose loss and correct sums since their last log were `sums`;
    `graphs`: replay CUDA graphs on the GPU (False: every step eager); epoch_start = (s, e): X's first
    epoch begins after step s and is numbered e (its shuffle is epoch_order(m, seed, e)), so that data
    of another size can go on from any step (MLPClassifier.partial_fit); (0, 0) for a run on one X.

    dropout_seed: the dropout masks' seed, when not `seed` (a network of nn_gpu.many's).

    run(first, last) queues steps first..last, in runs that each lie in one epoch, one batch size and
    one schedule window (`chunk_end`); read_sums() reads the loss and correct sums, and reset_sums()
    starts them again.
    """

    def __init__(
        self,
        network,
        optimizer,
        X,
        y,
        plan,
        seed: int,
        done: int,
        sums=(0.0, 0.0),
        graphs: bool = True,
        epoch_start: tuple[int, int] = (0, 0),
        dropout_seed: int | None = None,
    ):
        device, xp = network.device, network.device.xp
        self.network, self.optimizer, self.plan, self.seed = network, optimizer, plan, seed
        self.start, self.start_epoch = epoch_start
        self.m = X.shape[1]
        self.total = plan.total_iterations(self.m)
        self.batches = plan.batches_per_epoch(self.m)
        self.X = X if device.name == "cpu" else xp.asfortranarray(X)  # the n0 x m transpose of the samples
        self.y = y if device.name == "cpu" else y.astype(np.int32, copy=False)
        self.done = device.to_device(np.array([done], dtype=np.int64))
        self.sums = device.to_device(np.array(sums, dtype=np.float64))
        self.schedule = ScheduleTable(optimizer, plan.lr_schedule, plan.learning_rate, self.total, SCHEDULE_WINDOW)
        self.order = None if plan.batch_size is None else xp.empty(self.m, dtype=np.int64)
        self.order_epoch: int | None = None
        rates = dropout.layer_rates(plan.dropout, network.n_layers - 1)
        masks_seed = seed if dropout_seed is None else dropout_seed
        self.dropout = dropout.Dropout(rates, masks_seed, self.done, network.arch.dtype) if any(rates) else None
        self.distortion = augment.distortion(plan.augment) if plan.augment else None
        self.graphed = graphs and device.name == "gpu" and self.distortion is None
        self.graphs: dict[tuple[int, int], object] = {}  # (batch count, steps) -> CUDA graph
        self.memory = GraphMemory(xp) if self.graphed else None
        self.average = None  # the weights' moving average (nn_gpu.averaging), updated after each step when set

    def count(self, t: int) -> int:
        """The samples of step t's batch: the batch size, less for an epoch's last, short batch."""
        if self.plan.batch_size is None:
            return self.m
        position = (t - 1 - self.start) % self.batches
        return min(self.plan.batch_size, self.m - position * self.plan.batch_size)

    def chunk_end(self, t: int, limit: int) -> int:
        """The last step, at most `limit`, that shares step t's epoch, batch size and schedule window."""
        last = min(limit, self.schedule.window_end(t))
        if self.plan.batch_size is not None:
            epoch_end = self.start + (t - 1 - self.start) // self.batches * self.batches + self.batches
            short = self.m % self.plan.batch_size != 0  # the epoch's last batch is a size of its own
            last = min(last, epoch_end - 1 if short and t < epoch_end else epoch_end)
        return last

    def run(self, first: int, last: int) -> int:
        """Queue steps first..last (the steps done must be first - 1), eagerly or as graph replays, in
        runs that chunk_end allows; the samples they train on."""
        samples = 0
        while first <= last:
            end = last if first == last else self.chunk_end(first, last)
            self._run(first, end)
            samples += (end - first + 1) * self.count(first)
            first = end + 1
        return samples

    def _run(self, first: int, last: int) -> None:
        """Steps first..last of one epoch, batch size and schedule window."""
        epoch = self.start_epoch + (first - 1 - self.start) // self.batches
        if self.order is not None and epoch != self.order_epoch:
            self.network.device.upload(self.order, epoch_order(self.m, self.seed, epoch))
            self.order_epoch = epoch
        self.schedule.load(first)
        if not self.graphed:
            for t in range(first, last + 1):
                self._step(self.count(t), t)
            return
        count = self.count(first)
        if (count, 1) not in self.graphs:  # warm-up: CuPy compiles, cuBLAS sets up; then capture
            self._step(count, first)
            self.graphs[count, 1] = self._capture(count, 1)
            self.graphs[count, STEPS_PER_GRAPH] = self._capture(count, STEPS_PER_GRAPH)
            first += 1
        long, single = divmod(last - first + 1, STEPS_PER_GRAPH)
        for _ in range(long):
            self.graphs[count, STEPS_PER_GRAPH].launch()
        for _ in range(single):
            self.graphs[count, 1].launch()

    def read_sums(self) -> tuple[float, float]:
        """(loss sum, correct sum) over the samples since reset_sums (or the start). Synchronises."""
        loss, correct = self.network.device.to_host(self.sums).tolist()  # host sync
        return loss, correct

    def reset_sums(self) -> None:
        self.sums.fill(0)

    def learning_rate(self, t: int) -> float:
        """Step t's learning rate, as the schedule table has it (before rounding to the dtype)."""
        return learning_rate(self.plan.lr_schedule, self.plan.learning_rate, t, self.total)

    def _step(self, count: int, t: int | None = None) -> None:
        """One step on `count` samples, all device work. t, the step's number on the host, is needed only to
        distort its batch (augmentation draws on the host: such runs are never captured)."""
        network, ops = self.network, self.network.device.ops
        if self.order is None:
            X, y = self.X, self.y
        else:
            X, y = ops.gather(
                self.X, self.y, self.order, self.done, self.start, self.batches, self.plan.batch_size, count
            )
        if self.distortion is not None:  # n x n0 images in, distorted n x n0 out: X is their n0 x n view
            X = augment.distort(X.T, self.distortion, augment.batch_rng(self.seed, t), network.arch.dtype).T
        network.sum_gradients(X, y, self.sums, self.dropout, self.plan.label_smoothing)
        self.optimizer.update(self.schedule.rows, self.done, count)
        if self.average is not None:
            averaging.update(self.average, network.state, self.done, self.plan.average_weights)

    def _capture(self, count: int, steps: int):
        """A CUDA graph of `steps` steps on `count` samples; nothing runs until it is launched."""
        xp = self.network.device.xp
        stream = xp.cuda.Stream(non_blocking=True)
        self.network.device.synchronize()
        with self.memory.allocating(), stream:
            stream.begin_capture()
            try:
                for _ in range(steps):
                    self._step(count)
            except BaseException:  # end the capture, and report what broke it rather than the capture's end
                with contextlib.suppress(Exception):
                    stream.end_capture()
                raise
            return stream.end_capture()


class GraphMemory:
    """A memory pool of a graph's own: allocations made while capturing come from it and stay with it.

    Arrays a capture frees go back to this pool alone, where only a later allocation of the same
    capture, or of another graph of the same TrainingStep (all replayed one after another on one
    stream), can take them. The pool is kept as long as the graphs: it is never emptied.
    """

    def __init__(self, xp):
        self.xp = xp
        self.pool = xp.cuda.MemoryPool()

    @contextlib.contextmanager
    def allocating(self):
        """Allocate from this pool inside the block (on this thread)."""
        with self.xp.cuda.using_allocator(self.pool.malloc):
            yield
