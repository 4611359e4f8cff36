"""Inverted dropout (Srivastava et al. 2014): each training step drops units at random, and the same
units stay dropped in that step's backward pass.

For a layer input A_l (A0 = the pixels, A1 ... A_{L-1} the hidden layers) with rate p_l:

    forward    D_l ~ Bernoulli(1 - p_l), n_l x m     M_l = D_l / (1 - p_l)     A_l := A_l * M_l
    backward   dA_l = W_{l+1}^T dZ_{l+1} * M_l       dZ_l = dA_l * ReLU'(Z_l)

Dividing by 1 - p_l keeps each unit's expected value, so evaluation and prediction use the whole
network unchanged: masks are made for training steps only (Network.gradients), never for evaluate,
predict or predict_proba.

Masks are drawn on the host from (seed, iteration) alone, so a run resumed mid-epoch draws the same
masks as one never stopped, and the CPU and the GPU see the same masks for the same seed.
"""

from __future__ import annotations

import numpy as np

DROPOUT_STREAM = 1  # keys the random stream apart from the shuffle's (seed, epoch) and augmentation's


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


def masks(rates: tuple[float, ...], sizes, m: int, seed: int, iteration: int, device, dtype: str) -> list | None:
    """[M_0, ..., M_{L-1}] for one training step of m samples: M_l = D_l / (1 - p_l), n_l x m on the
    device (sizes: the layer widths n_0 = 784, ...); None for a layer with rate 0, and None in place of
    the list when every rate is 0. Drawn from (seed, iteration) alone."""
    if not any(rates):
        return None
    rng = np.random.default_rng([seed, DROPOUT_STREAM, iteration])
    result = []
    for p, n in zip(rates, sizes):
        if p == 0:
            result.append(None)
            continue
        kept = rng.random((n, m), dtype=np.float32) >= p  # D_l: 1 with probability 1 - p
        result.append(device.to_device(kept.astype(dtype) / np.asarray(1 - p, dtype)))
    return result
