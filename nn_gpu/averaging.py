"""Weight averaging (--average-weights DECAY): an exponential moving average of the network, which is
what a run evaluates and saves as its model.

After each step t's update, over the network's state (its parameters and batch norm's running statistics):

    average := d_t average + (1 - d_t) state,    d_t = min(DECAY, (1 + t) / (10 + t))

d_t is TensorFlow's ExponentialMovingAverage with num_updates: the first steps, where the weights move
most, do not pin the average to the start. With DECAY 0.999 the average spans about the last 1,000
steps. Polyak and Juditsky (1992) showed that an average of the iterates converges faster than the
last one; for a network it lands in a wider, flatter part of the loss (Izmailov et al. 2018).

Written against `xp`, reading t from the device (nn_gpu.step's `done`), so a graphed step replays it.
The training steps use the network's own weights; dev evaluations, the best model, the final model and
metrics use the average, and a checkpoint keeps both, so a resumed run goes on exactly.
"""

from __future__ import annotations

import contextlib

from nn_gpu.ops import array_module

WARM_UP = 10  # d_t = (1 + t) / (WARM_UP + t) while that is below DECAY


def update(average, state, done, decay: float) -> None:
    """average := d_t average + (1 - d_t) state, in place (both flat, on one device); done: int64 (1,),
    the steps completed, t, read on the device."""
    t = done.astype(average.dtype)
    keep = array_module(average).minimum((1 + t) / (WARM_UP + t), decay)
    average -= (1 - keep) * (average - state)


def start(network, average, decay: float):
    """The average to go on with: `average` (a resumed run's), else a copy of the network's state; None
    when decay is 0 (no averaging)."""
    if not decay:
        return None
    return network.state.copy() if average is None else average


def keep(network, average) -> None:
    """Make the average the network's state (the end of a run: the average is the model); nothing for None."""
    if average is not None:
        network.state[...] = average


@contextlib.contextmanager
def swapped_in(network, average):
    """The network holds `average` (flat, as network.state) inside the block, and its own state again after;
    a plain block when average is None."""
    if average is None:
        yield
        return
    own = network.state.copy()
    network.state[...] = average
    try:
        yield
    finally:
        network.state[...] = own
