"""Updating the parameters: SGD with momentum, Adam and AdamW, and learning-rate schedules.

SGD is PyTorch's, written out (g is the gradient of the mean loss, p a parameter):

    d = g + weight_decay p          (L2 weight decay, the gradient of weight_decay / 2 |p|^2)
    v := momentum v + d             (v starts at 0, so the first step has v = d)
    p := p - lr v

With momentum 0 and weight_decay 0 it is the notebook's p := p - alpha g.

Adam (Kingma and Ba 2015, Algorithm 1, with PyTorch's placement of eps), at step t = 1, 2, ...:

    d = g + weight_decay p                      (Adam: L2, as in SGD; AdamW: d = g)
    m := beta1 m + (1 - beta1) d                (the mean of the gradients, m starts at 0)
    v := beta2 v + (1 - beta2) d^2              (the mean of their squares, v starts at 0)
    m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)      (bias corrections)
    p := p - lr m_hat / (sqrt(v_hat) + eps)

AdamW (Loshchilov and Hutter 2019) decouples the decay from the gradient: p := (1 - lr weight_decay) p
before the same step. Each update is one op over the network's flat buffers of parameters,
gradients and moments (one CUDA kernel on the GPU); `state` is the list of those moment buffers.
In a training step the gradients arrive summed over the batch and the update divides them by its
size first, as g / m, so the bits are those of the mean taken before it.
"""

from __future__ import annotations

import math

import numpy as np

from nn_gpu.model import Network

SCHEDULES = ("constant", "step", "cosine")
OPTIMIZERS = ("sgd", "adam", "adamw")
BETAS = (0.9, 0.999)  # Adam's defaults, as in the paper and PyTorch
EPS = 1e-8


def learning_rate(schedule: str, alpha: float, iteration: int, total: int) -> float:
    """The learning rate of step `iteration` (1..total).

    constant: alpha.  step: alpha, then alpha / 10 from half-way and alpha / 100 from three
    quarters of the way.  cosine: alpha (1 + cos(pi (iteration - 1) / total)) / 2, from alpha
    down towards 0.
    """
    if schedule == "constant":
        return alpha
    progress = (iteration - 1) / total
    if schedule == "step":
        return alpha * 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    if schedule == "cosine":
        return alpha * (1 + math.cos(math.pi * progress)) / 2
    raise ValueError(f"unknown learning-rate schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")


def adam_scalars(t: int, lr: float, betas: tuple[float, float], weight_decay: float, decoupled: bool):
    """Adam's step t scalars (step_size, root_correction2, shrink): lr / (1 - beta1^t), sqrt(1 - beta2^t),
    and AdamW's 1 - lr weight_decay (1 for Adam)."""
    beta1, beta2 = betas
    shrink = 1 - lr * weight_decay if decoupled else 1.0
    return lr / (1 - beta1**t), math.sqrt(1 - beta2**t), shrink


class Optimizer:
    """What SGD and Adam share: a step counter (`steps`, the steps taken) and the two ways to update.

    step(lr) is the way of a loop written by hand: the step's scalars are computed on the host now.
    update(rows, done, count) is a training step's (nn_gpu.step): the scalars come from a schedule
    table on the device (ScheduleTable, built by the same `scalars`), and the step counter `done`
    lives there too, so the update can be replayed as part of a CUDA graph.
    """

    columns: tuple[str, ...] = ()  # the per-step scalars `scalars` gives, a row of the schedule table

    def __init__(self, network: Network, steps: int = 0):
        self.network, self.steps = network, steps
        self._done = network.device.xp.zeros(1, dtype=np.int64)  # step()'s counter: its one-row table ignores it

    def scalars(self, t: int, lr: float) -> tuple[float, ...]:
        raise NotImplementedError

    def update(self, rows, done, count: int) -> None:
        """One update from network.flat_grad, the gradients summed over `count` samples (left as their
        mean), with step t = done + 1's scalars rows[(t - 1) mod len(rows)]; done := t."""
        raise NotImplementedError

    def step(self, lr: float) -> None:
        """One update at learning rate lr from the mean gradient in network.flat_grad."""
        self.steps += 1
        net = self.network
        rows = net.device.to_device(np.array([self.scalars(self.steps, lr)], dtype=net.arch.dtype))
        self.update(rows, self._done, 1)


class SGD(Optimizer):
    """SGD with momentum and weight decay over a Network's flat buffers (see the module docstring)."""

    columns = ("lr",)

    def __init__(
        self, network: Network, momentum: float = 0.0, weight_decay: float = 0.0, velocity=None, steps: int = 0
    ):
        super().__init__(network, steps)
        self.momentum = momentum
        self.weight_decay = weight_decay
        xp = network.device.xp
        self.velocity = xp.zeros_like(network.flat) if velocity is None else network.device.to_device(velocity)

    @property
    def state(self) -> list:
        """The moment buffers a checkpoint keeps: [velocity]."""
        return [self.velocity]

    def scalars(self, t: int, lr: float) -> tuple[float]:
        return (lr,)

    def update(self, rows, done, count: int) -> None:
        net = self.network
        net.device.ops.sgd_update(
            net.flat, net.flat_grad, self.velocity, rows, done, count, self.momentum, self.weight_decay
        )


class Adam(Optimizer):
    """Adam, or AdamW with decoupled=True, over a Network's flat buffers (see the module docstring).

    steps: the steps already taken (a resumed run's iteration), so the bias corrections go on where
    they stopped; state: [m, v] from a checkpoint, or None for zeros.
    """

    columns = ("step_size", "root_correction2", "shrink")

    def __init__(
        self,
        network: Network,
        weight_decay: float = 0.0,
        decoupled: bool = False,
        betas: tuple[float, float] = BETAS,
        eps: float = EPS,
        state=None,
        steps: int = 0,
    ):
        super().__init__(network, steps)
        self.weight_decay, self.decoupled = weight_decay, decoupled
        self.betas, self.eps = betas, eps
        device = network.device
        if state is None:
            self.m, self.v = device.xp.zeros_like(network.flat), device.xp.zeros_like(network.flat)
        else:
            self.m, self.v = (device.to_device(s) for s in state)

    @property
    def state(self) -> list:
        """The moment buffers a checkpoint keeps: [m, v]."""
        return [self.m, self.v]

    def scalars(self, t: int, lr: float) -> tuple[float, float, float]:
        return adam_scalars(t, lr, self.betas, self.weight_decay, self.decoupled)

    def update(self, rows, done, count: int) -> None:
        net = self.network
        l2 = 0.0 if self.decoupled else self.weight_decay
        net.device.ops.adam_update(
            net.flat, net.flat_grad, self.m, self.v, rows, done, count, *self.betas, self.eps, l2
        )


class ScheduleTable:
    """The optimiser's scalars of every step on the device, `window` steps at a time: row (t - 1) mod
    window holds step t's, as optimizer.scalars(t, learning_rate(schedule, alpha, t, total)) gives them,
    rounded to the network's dtype: the numbers step(lr) would use, bit for bit. A training step's
    update reads its row there, so what the host computes once per window never waits in the step."""

    def __init__(self, optimizer: Optimizer, schedule: str, alpha: float, total: int, window: int):
        self.optimizer, self.schedule, self.alpha, self.total = optimizer, schedule, alpha, total
        self.window = max(1, min(window, total))
        device, dtype = optimizer.network.device, optimizer.network.arch.dtype
        self.rows = device.xp.zeros((self.window, len(optimizer.columns)), dtype=dtype)
        self.loaded: int | None = None  # the window whose rows are on the device

    def host_rows(self, first: int, last: int):
        """Rows for steps first..last, on the host."""
        opt = self.optimizer
        return np.array(
            [opt.scalars(t, learning_rate(self.schedule, self.alpha, t, self.total)) for t in range(first, last + 1)],
            dtype=opt.network.arch.dtype,
        ).reshape(-1, len(opt.columns))

    def window_end(self, t: int) -> int:
        """The last step of step t's window."""
        return (t - 1) // self.window * self.window + self.window

    def load(self, t: int) -> None:
        """Put step t's window on the device (a copy queued behind the steps before it), unless it is there."""
        number = (t - 1) // self.window
        if number != self.loaded:
            first = number * self.window + 1
            host = self.host_rows(first, min(first + self.window - 1, self.total))
            self.optimizer.network.device.upload(self.rows[: len(host)], host)
            self.loaded = number


def make_optimizer(
    name: str, network: Network, momentum: float = 0.0, weight_decay: float = 0.0, state=None, steps: int = 0
) -> Optimizer:
    """The optimiser `name` (one of OPTIMIZERS) for `network`; state and steps continue a saved run.
    momentum is SGD's alone; weight_decay is L2 for sgd and adam, decoupled for adamw."""
    if name == "sgd":
        return SGD(network, momentum, weight_decay, None if state is None else state[0], steps)
    if name in ("adam", "adamw"):
        return Adam(network, weight_decay, decoupled=name == "adamw", state=state, steps=steps)
    raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
