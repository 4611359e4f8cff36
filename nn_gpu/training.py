"""The training loop: gradient descent on full batches or shuffled mini-batches, made safe for long runs.

Data goes to the device once; each iteration runs only device work (nn_gpu.step: a gather of the
batch on the device, the forward and backward pass, the update; on the GPU, CUDA graphs of it). The
host queues runs of steps between log, save and stop points. Loss and accuracy come back to the host
only at logged iterations and checkpoints, and the clock behind `train_seconds` is stopped around them.

Everything needed to continue a run lives in `Progress` (plus the parameters and velocities), and
each epoch's shuffle is drawn from (seed, epoch) alone, so a run resumed from a checkpoint ends with
the same parameters, bit for bit, as one that was never stopped, or one planned that long from the
start (a run is extended by resuming it with more epochs or iterations).

With a dev set, the parameters at the best dev accuracy so far are kept (`Progress.best_params`, a
device copy made at each improvement: Keras' restore_best_weights, sklearn's early_stopping), and
`early_stopping` N > 0 ends the run after N evaluations in a row without an improvement.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from nn_gpu import averaging, parallel
from nn_gpu.errors import NNGpuError
from nn_gpu.model import Network
from nn_gpu.step import TrainingStep, epoch_order

EXPLODING_LOSS = 100.0  # mean cross-entropy; chance level for 10 classes is log 10 = 2.3
EPOCH_BATCH_SIZE = 64  # the mini-batch of a run by epochs with no batch size: PyTorch's MNIST example


class Diverged(NNGpuError):
    """The loss became non-finite or exploded; training stopped before saving anything bad."""

    exit_code = 3


class Interrupted(NNGpuError):
    """A stop signal (Ctrl-C, SIGTERM, SIGHUP): a checkpoint was saved and the run stopped; exit 128 + signal.

    Not an error: the message is printed as it is, without "error:".
    """

    def __init__(self, when: str, signum: int = signal.SIGINT):
        by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        super().__init__(f"stopped{by} {when}")
        self.when, self.signum, self.exit_code = when, signum, 128 + signum


@dataclass(frozen=True)
class TrainingPlan:
    """How long, in what batches and at what learning rate to train.

    By iterations (the default): batch_size None means the full training set each iteration (the
    notebook's gradient descent); otherwise each iteration is one step on the next batch_size samples
    of a per-epoch shuffle. By epochs (epochs given): iterations = epochs x batches per epoch, in
    mini-batches of EPOCH_BATCH_SIZE unless batch_size says otherwise, as an epoch means in Keras,
    PyTorch and scikit-learn. log_interval: evaluate every N iterations, 0 only at the end; None
    (the default) every 10 iterations, or once an epoch when training by epochs. save_every N > 0
    saves a checkpoint every N iterations; a checkpoint is also saved at the end. early_stopping N > 0
    ends the run after N evaluations without a better dev accuracy. label_smoothing: eps of the
    training targets (nn_gpu.model.smooth_labels), 0 for none. dropout: rates (input, hidden...)
    as nn_gpu.dropout.layer_rates reads them, or None; augment: a recipe of nn_gpu.augment.distortion
    (each training batch distorted afresh), or None; average_weights: the decay of the weights' moving
    average (nn_gpu.averaging), which is then evaluated and kept as the model; 0 for none.
    """

    learning_rate: float = 0.10
    iterations: int = 500
    epochs: int | None = None
    batch_size: int | None = None
    log_interval: int | None = None
    lr_schedule: str = "constant"
    save_every: int = 0
    early_stopping: int = 0
    dropout: tuple[float, ...] | None = None
    augment: str | None = None
    label_smoothing: float = 0.0
    average_weights: float = 0.0

    def __post_init__(self):
        if self.epochs is not None and self.batch_size is None:
            object.__setattr__(self, "batch_size", EPOCH_BATCH_SIZE)

    def evaluate_every(self, m: int) -> int:
        """Iterations between evaluations (0: only at the end)."""
        if self.log_interval is not None:
            return self.log_interval
        return 10 if self.epochs is None else self.batches_per_epoch(m)

    def batches_per_epoch(self, m: int) -> int:
        return 1 if self.batch_size is None else math.ceil(m / self.batch_size)

    def total_iterations(self, m: int) -> int:
        if self.epochs is None:
            return self.iterations
        return self.epochs * self.batches_per_epoch(m)


@dataclass
class Progress:
    """How far a run has come: completed iterations, history, time, and the sums since the last log."""

    iteration: int = 0
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    samples: int = 0
    loss_sum: float = 0.0
    correct_sum: float = 0.0
    seen: int = 0
    final: dict = field(default_factory=dict)
    best_iteration: int | None = None  # the evaluation with the best dev accuracy so far
    best_dev_accuracy: float | None = None
    waited: int = 0  # evaluations since the best
    stopped_early: bool = False
    best_params: object = field(default=None, repr=False)  # network.state at the best, on the device; not in to_dict
    # the moving average of network.state (nn_gpu.averaging), on the device; not in to_dict
    average: object = field(default=None, repr=False)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.train_seconds if self.train_seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        """Everything but the arrays, as JSON-ready values (a checkpoint stores best_params and average as arrays)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("best_params", "average")}


class Batches:
    """The rows of each iteration's batch (None: the whole set), as index arrays of xp: one shuffle and
    one small host-to-device copy per epoch. What nn_gpu.step's gather takes on the device, written out
    on the host: nn_gpu.bench.ladder gives PyTorch its batches from it, and the tests hold the two equal."""

    def __init__(self, m: int, plan: TrainingPlan, seed: int, xp):
        self.m, self.plan, self.seed, self.xp = m, plan, seed, xp
        self._epoch, self._order = None, None

    def rows(self, iteration: int):
        size = self.plan.batch_size
        if size is None:
            return None
        epoch, position = divmod(iteration - 1, self.plan.batches_per_epoch(self.m))
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = self.xp.asarray(epoch_order(self.m, self.seed, epoch))
        return self._order[position * size : (position + 1) * size]


@dataclass
class Hooks:
    """How a caller follows and steers a run; each is optional.

    on_log(entry): each evaluation's history entry {iteration, (epoch, when training by epochs),
    learning_rate, train_loss, train_accuracy, dev_loss, dev_accuracy, samples_per_second}: the
    training metrics are the means over the batches since the last entry, each measured before its
    update; returning True stops the run there, as an early stop does (MLPClassifier's own rule).
    on_steps(steps, samples): after each run of steps queued together.
    save(progress): write a checkpoint and return its path; called every save_every iterations, at the
    end (the last iteration, or an early stop) and on a stop signal.
    stop_requested(): a stop signal's number, or 0; a checkpoint is saved and Interrupted raised.
    """

    on_log: Callable[[dict], bool | None] = lambda entry: None
    on_steps: Callable[[int, int], None] = lambda steps, samples: None
    save: Callable[[Progress], Path] | None = None
    stop_requested: Callable[[], int] = lambda: 0


def train(
    network: Network,
    optimizer,
    X,
    y,
    dev: tuple | None,
    plan: TrainingPlan,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    hooks: Hooks | None = None,
    exploding_loss: float = EXPLODING_LOSS,
    graphs: bool = True,
    evaluate_at_end: bool = True,
    epoch_start: tuple[int, int] = (0, 0),
    dropout_seed: int | None = None,
) -> Progress:
    """Train `network` on X (n0 x m) and y (m labels), both on its device, from `progress` onwards, with
    `optimizer` (nn_gpu.optim: SGD or Adam) and the plan's dropout, augmentation and weight averaging.

    dev: (X_dev, y_dev), evaluated at each logged iteration, or None. hooks: what the caller sees and steers (Hooks;
    None: nothing). A non-finite loss, or one over exploding_loss, raises Diverged before anything is saved from the
    bad state. graphs: on the GPU, replay each step as a CUDA graph (nn_gpu.step; the same bits as without).
    evaluate_at_end: evaluate the training set (and dev) into progress.final. epoch_start: (steps, epoch): X's first
    epoch follows that many steps, numbered so (MLPClassifier.partial_fit goes on from earlier calls on other X this
    way). dropout_seed: the masks' seed when not `seed` (a network of nn_gpu.many's)."""
    with parallel.one_blas_thread():  # set once for the run: setting it costs 16 us, a mini-batch step 200
        progress, hooks, m = progress or Progress(), hooks or Hooks(), X.shape[1]
        total, every = plan.total_iterations(m), plan.evaluate_every(m)
        sums, done = (progress.loss_sum, progress.correct_sum), progress.iteration
        step = TrainingStep(network, optimizer, X, y, plan, seed, done, sums, graphs, epoch_start, dropout_seed)
        step.average = progress.average = averaging.start(network, progress.average, plan.average_weights)
        ledger = Ledger(network, step, progress, exploding_loss)
        while progress.iteration < total and not progress.stopped_early:
            first = progress.iteration + 1
            last = _next_stop(step, first, total, every, plan.save_every)
            samples = step.run(first, last)  # queued: nothing is read back
            ledger.ran(last, samples)
            hooks.on_steps(last - first + 1, samples)
            log_now = (every and last % every == 0) or last == total
            periodic = plan.save_every and last % plan.save_every == 0
            signum = hooks.stop_requested()
            if not (log_now or periodic or signum):
                continue
            ledger.pause()  # host sync
            if log_now:
                entry = ledger.evaluate(dev, plan, m)
                progress.stopped_early |= bool(hooks.on_log(entry))  # True: the caller stops the run here
            if hooks.save is not None and (periodic or signum or last == total or progress.stopped_early):
                ledger.checkpoint(hooks.save)
            if signum:
                where = f"; checkpoint saved to {ledger.last_saved[1]}" if hooks.save else ""
                raise Interrupted(f"at iteration {last}{where}", signum)
            ledger.go_on()
        optimizer.steps = progress.iteration
        averaging.keep(network, progress.average)
        if evaluate_at_end:
            train_loss, train_accuracy = network.evaluate(X, y)
            progress.final = {"train_loss": train_loss, "train_accuracy": train_accuracy, **_dev_metrics(network, dev)}
        return progress


def _next_stop(step: TrainingStep, first: int, total: int, every: int, save_every: int) -> int:
    """The last iteration of the steps queued at once from `first`: eager, one step, so that a stop is
    seen at once; graphed, every step before the next log or save point."""
    if not step.graphed:
        return first

    def next_multiple(n: int) -> int:  # the first multiple of n from `first` (total for n = 0)
        return -(-first // n) * n if n else total

    return step.chunk_end(first, min(total, next_multiple(every), next_multiple(save_every)))


class Ledger:
    """A run's accounts: the steps and samples done, the training clock (stopped around evaluations
    and checkpoints, the device synchronised first), the sums since the last log, the history, the
    best dev accuracy, and the last checkpoint saved."""

    def __init__(self, network: Network, step: TrainingStep, progress: Progress, exploding_loss: float):
        self.network, self.step, self.progress, self.exploding_loss = network, step, progress, exploding_loss
        self.last_saved: tuple[int, Path] | None = None
        self.logged = (progress.samples, progress.train_seconds)  # at the last log: the speed since
        self.go_on()

    def ran(self, iteration: int, samples: int) -> None:
        self.progress.iteration = iteration
        self.progress.seen += samples
        self.progress.samples += samples

    def pause(self) -> None:
        """Read the sums back (a host sync) and stop the clock."""
        self.progress.loss_sum, self.progress.correct_sum = self.step.read_sums()
        self.progress.train_seconds += time.perf_counter() - self.started

    def go_on(self) -> None:
        self.network.device.synchronize()
        self.started = time.perf_counter()

    def evaluate(self, dev, plan: TrainingPlan, m: int) -> dict:
        """The history entry of this iteration (Diverged first if the run has diverged); the sums start
        again, and the best parameters are kept."""
        progress, iteration = self.progress, self.progress.iteration
        lr = self.step.learning_rate(iteration)
        _guard(self.network, progress, lr, self.last_saved, self.exploding_loss)
        seconds = progress.train_seconds - self.logged[1]
        entry = {
            "iteration": iteration,
            **({} if plan.epochs is None else {"epoch": iteration / plan.batches_per_epoch(m)}),
            "learning_rate": lr,
            "train_loss": progress.loss_sum / progress.seen,
            "train_accuracy": progress.correct_sum / progress.seen,
            **self.dev_metrics(dev),
            "samples_per_second": (progress.samples - self.logged[0]) / seconds,
        }
        self.logged = (progress.samples, progress.train_seconds)
        progress.history.append(entry)
        progress.loss_sum = progress.correct_sum = 0.0
        progress.seen = 0
        self.step.reset_sums()
        if dev is not None:
            evaluated = self.network.state if progress.average is None else progress.average
            _keep_best(evaluated, progress, entry["dev_accuracy"], plan.early_stopping)
        return entry

    def dev_metrics(self, dev) -> dict:
        with averaging.swapped_in(self.network, self.progress.average):
            return _dev_metrics(self.network, dev)

    def checkpoint(self, save: Callable[[Progress], Path]) -> None:
        progress = self.progress
        _guard(
            self.network, progress, self.step.learning_rate(progress.iteration), self.last_saved, self.exploding_loss
        )
        self.last_saved = (progress.iteration, save(progress))


def _keep_best(state, progress: Progress, dev_accuracy: float, patience: int) -> None:
    """Keep a copy of `state` (the network's state that scored dev_accuracy: its own, or its average) when
    it beats the best so far (the first best wins a tie); count the evaluations since, and mark the run
    stopped once they reach patience (0: never)."""
    if progress.best_dev_accuracy is None or dev_accuracy > progress.best_dev_accuracy:
        progress.best_dev_accuracy, progress.best_iteration, progress.waited = dev_accuracy, progress.iteration, 0
        progress.best_params = state.copy()
    else:
        progress.waited += 1
    progress.stopped_early = bool(patience) and progress.waited >= patience


def _guard(network: Network, progress: Progress, lr: float, last_saved, exploding_loss: float) -> None:
    """Raise Diverged if the loss since the last log, or any parameter, is non-finite, or the loss is over exploding_loss."""
    loss = progress.loss_sum / progress.seen if progress.seen else 0.0
    finite = math.isfinite(loss) and bool(network.device.xp.isfinite(network.flat).all())  # host sync
    if finite and loss <= exploding_loss:
        return
    if last_saved is None:
        kept = "no checkpoint was saved (use --save-every N to keep one)"
    else:
        kept = f"the last good checkpoint, from iteration {last_saved[0]}, is {last_saved[1]}"
    raise Diverged(
        f"training diverged at iteration {progress.iteration}: train loss {loss:.4g} at learning rate {lr:g}; "
        f"lower --alpha (try {lr / 10:g}); {kept}"
    )


def _dev_metrics(network: Network, dev) -> dict:
    if dev is None:
        return {"dev_loss": None, "dev_accuracy": None}
    loss, accuracy = network.evaluate(*dev)
    return {"dev_loss": loss, "dev_accuracy": accuracy}
