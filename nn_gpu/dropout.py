"""Inverted dropout (Srivastava et al. 2014): each training step drops units at random, and the same
units stay dropped in that step's backward pass.

For a layer input A_l (A0 = the pixels, A1 ... A_{L-1} the hidden layers) with rate p_l:

    forward    D_l ~ Bernoulli(1 - p_l), n_l x m     M_l = D_l / (1 - p_l)     A_l := A_l * M_l
    backward   dZ_l = dA_l * s_l * [A_l > 0],  s_l = 1 / (1 - p_l)

The backward pass needs no stored mask: A_l, kept after its mask, is 0 wherever a unit was dropped,
and elsewhere M_l = s_l. Dividing by 1 - p_l keeps each unit's expected value, so evaluation and
prediction use the whole network unchanged: masks are made for training steps only, never for
evaluate, predict or predict_proba.

The masks are counter-based random numbers: D_l's element e = h m + j (unit h, sample j of a batch of
m) is kept when draw e of Philox4x64-10 (Salmon et al. 2011) for counter (step, element) and key
(seed, layer) is at least p_l 2^32. Any element of any step can be drawn on its own, so the GPU
draws it inside the kernel that applies it (nn_gpu.cuda_source, nn_dropout_draw), the CPU draws
the same numbers through NumPy's own Philox bit generator (`draws` below), and a run resumed
mid-epoch draws what a run never stopped draws.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

DROPOUT_STREAM = 1  # keys the random stream apart from the shuffle's (seed, epoch) and augmentation's
UINT64 = 2**64


def layer_rates(rates, n_hidden: int) -> tuple[float, ...]:
    """The rate of each layer input A0, A1, ..., A_{n_hidden}: `rates` is (input, hidden...) and its last
    value repeats over the remaining hidden layers; () or None means no dropout anywhere."""
    if not rates:
        return (0.0,) * (n_hidden + 1)
    rates = tuple(float(p) for p in rates)
    if len(rates) > n_hidden + 1:
        raise ValueError(
            f"{len(rates)} dropout rates for {n_hidden} hidden layers: give the input's and at most one per hidden layer"
        )
    if not all(0 <= p < 1 for p in rates):
        raise ValueError(f"dropout rates must lie in [0, 1); got {rates}")
    return rates + rates[-1:] * (n_hidden + 1 - len(rates))


def key(seed: int, layer: int) -> tuple[int, int]:
    """The Philox key of layer input A_layer's masks in a run drawn from `seed`."""
    return seed % UINT64, (DROPOUT_STREAM << 32) | layer


def threshold(p: float) -> int:
    """A unit is dropped when its 32-bit draw is below this: p 2^32, rounded (P(drop) = p to 2^-33)."""
    return min(round(p * 2**32), 2**32 - 1)


def draws(key: tuple[int, int], step: int, first: int, count: int) -> np.ndarray:
    """Draws first .. first + count - 1 (uint32) of training step `step`'s stream for `key`: the 64-bit
    words of np.random.Philox(counter=[0, step, 0, 0], key=key), as little-endian halves, low first.
    Draw e comes from the block with counter (e / 8 + 1, step, 0, 0), as nn_dropout_draw computes it."""
    block, skip = divmod(first, 8)
    counter, key = np.array([block, step, 0, 0], dtype=np.uint64), np.array(key, dtype=np.uint64)
    words = np.random.Philox(counter=counter, key=key).random_raw(math.ceil((skip + count) / 2))
    return words.view("<u4")[skip : skip + count]


def kept(key: tuple[int, int], threshold: int, step: int, rows: int, width: int, first: int, columns: int):
    """D for columns first .. first + columns - 1 of an n x width mask (n = rows; element e = h width + j):
    a rows x columns boolean array, True where the unit is kept."""
    if first == 0 and columns == width:  # the whole batch: one stretch of the stream
        return draws(key, step, 0, rows * width).reshape(rows, width) >= threshold
    return np.stack([draws(key, step, h * width + first, columns) for h in range(rows)]) >= threshold


class Draw(NamedTuple):
    """One layer input's mask in one training step, as the ops take it: drawn from the step counter
    `done` (a device int64 (1,): the step drawing is done + 1), `key` and `threshold`; kept units are
    multiplied by `scale` = 1 / (1 - p) (in the network's dtype). The mask is n x width, element
    h width + j; an op applies its columns first, first + 1, ... (a block of a batch, on the CPU)."""

    key: tuple[int, int]
    threshold: int
    scale: np.floating
    done: object
    first: int
    width: int

    def kept(self, rows: int, columns: int) -> np.ndarray:
        """D for this op's rows x columns on the host. Reads the step counter: the CPU's way."""
        return kept(self.key, self.threshold, int(self.done[0]) + 1, rows, self.width, self.first, columns)


class Dropout:
    """The dropout of a run: rates per layer input (layer_rates), the seed, and the step counter the
    masks are drawn for (a device int64 (1,) holding the steps done, which the update advances)."""

    def __init__(self, rates: tuple[float, ...], seed: int, done, dtype: str):
        self.rates, self.seed, self.done = rates, seed, done
        self.scales = [np.asarray(1, dtype) / np.asarray(1 - p, dtype) for p in rates]  # as M = D / (1 - p) scales

    @classmethod
    def at(cls, rates, seed: int, step: int, xp, dtype: str) -> Dropout:
        """The dropout of training step `step` (1, 2, ...) on a counter of its own: for a step taken by hand."""
        return cls(rates, seed, xp.asarray(np.array([step - 1], dtype=np.int64)), dtype)

    def draws(self, first: int, width: int) -> list[Draw | None]:
        """Each layer input's Draw for columns from `first` of a batch of `width` samples; None where p = 0."""
        return [
            None if p == 0 else Draw(key(self.seed, l), threshold(p), scale, self.done, first, width)
            for l, (p, scale) in enumerate(zip(self.rates, self.scales))
        ]


def masks(rates: tuple[float, ...], sizes, m: int, seed: int, iteration: int, device, dtype: str) -> list | None:
    """[M_0, ..., M_{L-1}] of training step `iteration` for m samples: M_l = D_l / (1 - p_l), n_l x m
    on the device (sizes: the layer widths n_0, n_1, ...); None for a layer with rate 0, and None in
    place of the list when every rate is 0. The masks a training step applies inside its ops, made
    whole for Network.forward(X, keep=True, masks=...), where a learner can look at them."""
    if not any(rates):
        return None
    draws = Dropout.at(rates, seed, iteration, np, dtype).draws(0, m)  # the very draws of the step's ops
    return [
        None if draw is None else device.to_device(np.where(draw.kept(n, m), draw.scale, np.zeros((), dtype)))
        for draw, n in zip(draws, sizes)
    ]
