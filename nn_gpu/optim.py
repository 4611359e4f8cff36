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
"""

from __future__ import annotations

import math

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


class SGD:
    """SGD with momentum and weight decay over a Network's flat buffers (see the module docstring)."""

    def __init__(self, network: Network, momentum: float = 0.0, weight_decay: float = 0.0, velocity=None):
        self.network = network
        self.momentum = momentum
        self.weight_decay = weight_decay
        xp = network.device.xp
        self.velocity = xp.zeros_like(network.flat) if velocity is None else network.device.to_device(velocity)

    @property
    def state(self) -> list:
        """The moment buffers a checkpoint keeps: [velocity]."""
        return [self.velocity]

    def step(self, lr: float) -> None:
        """p := p - lr v for every parameter, from the gradients in network.flat_grad."""
        net = self.network
        net.device.ops.sgd_update(net.flat, net.flat_grad, self.velocity, lr, self.momentum, self.weight_decay)


class Adam:
    """Adam, or AdamW with decoupled=True, over a Network's flat buffers (see the module docstring).

    steps: the steps already taken (a resumed run's iteration), so the bias corrections go on where
    they stopped; state: [m, v] from a checkpoint, or None for zeros.
    """

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
        self.network, self.weight_decay, self.decoupled = network, weight_decay, decoupled
        self.betas, self.eps, self.steps = betas, eps, steps
        device = network.device
        if state is None:
            self.m, self.v = device.xp.zeros_like(network.flat), device.xp.zeros_like(network.flat)
        else:
            self.m, self.v = (device.to_device(s) for s in state)

    @property
    def state(self) -> list:
        """The moment buffers a checkpoint keeps: [m, v]."""
        return [self.m, self.v]

    def step(self, lr: float) -> None:
        """One Adam (or AdamW) step at learning rate lr, from the gradients in network.flat_grad."""
        self.steps += 1
        beta1, beta2 = self.betas
        l2, shrink = (0.0, 1 - lr * self.weight_decay) if self.decoupled else (self.weight_decay, 1.0)
        step_size = lr / (1 - beta1**self.steps)
        root_correction2 = math.sqrt(1 - beta2**self.steps)
        net = self.network
        net.device.ops.adam_update(
            net.flat, net.flat_grad, self.m, self.v, beta1, beta2, self.eps, l2, shrink, step_size, root_correction2
        )


def make_optimizer(
    name: str, network: Network, momentum: float = 0.0, weight_decay: float = 0.0, state=None, steps: int = 0
):
    """The optimiser `name` (one of OPTIMIZERS) for `network`; state and steps continue a saved run.
    momentum is SGD's alone; weight_decay is L2 for sgd and adam, decoupled for adamw."""
    if name == "sgd":
        return SGD(network, momentum, weight_decay, None if state is None else state[0])
    if name in ("adam", "adamw"):
        return Adam(network, weight_decay, decoupled=name == "adamw", state=state, steps=steps)
    raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
