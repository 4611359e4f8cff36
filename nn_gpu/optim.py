"""Updating the parameters: SGD with momentum and weight decay, and learning-rate schedules.

The update is PyTorch's SGD, written out (g is the gradient of the mean loss, p a parameter):

    d = g + weight_decay p          (L2 weight decay, the gradient of weight_decay / 2 |p|^2)
    v := momentum v + d             (v starts at 0, so the first step has v = d)
    p := p - lr v

With momentum 0 and weight_decay 0 it is the notebook's p := p - alpha g. It runs as one op over
the network's flat buffers of parameters, gradients and velocities (one CUDA kernel on the GPU).
"""

from __future__ import annotations

import math

from nn_gpu.model import Network

SCHEDULES = ("constant", "step", "cosine")


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

    def step(self, lr: float) -> None:
        """p := p - lr v for every parameter, from the gradients in network.flat_grad."""
        net = self.network
        net.device.ops.sgd_update(net.flat, net.flat_grad, self.velocity, lr, self.momentum, self.weight_decay)
