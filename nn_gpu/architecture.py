"""A network's shape: its layer sizes, dtype and batch norm (`Architecture`), the names and shapes of its
arrays, and how its parameters are drawn (`init_parameters`). nn_gpu.model's Network runs on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nn_gpu.shapes import N_CLASSES, N_PIXELS

INITS = ("he", "uniform")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Architecture:
    """Layer sizes (n0 inputs, hidden..., C classes; 784 and 10 for digits) and the floating dtype of
    every parameter."""

    hidden: tuple[int, ...] = (10,)
    dtype: str = "float32"
    n_inputs: int = N_PIXELS
    n_classes: int = N_CLASSES
    batch_norm: bool = False

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.n_inputs, *self.hidden, self.n_classes)

    @property
    def pictures(self) -> bool:
        """Whether the inputs can be 28 x 28 pictures (784 of them), for what draws or reads a digit."""
        return self.n_inputs == N_PIXELS

    @property
    def n_layers(self) -> int:
        """L: the hidden layers and the output layer."""
        return len(self.sizes) - 1

    @property
    def n_parameters(self) -> int:
        """Every weight and bias, the sum over layers of n_l x (n_{l-1} + 1), and with batch norm each
        hidden unit's scale g: the length of Network.flat."""
        pairs = sum(n_out * (n_in + 1) for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]))
        return pairs + (sum(self.hidden) if self.batch_norm else 0)

    @property
    def n_statistics(self) -> int:
        """With batch norm, each hidden unit's running mean and variance (nn_gpu.batch_norm); else 0."""
        return 2 * sum(self.hidden) if self.batch_norm else 0

    @property
    def names(self) -> list[str]:
        """The names of the network's arrays, parameters then statistics: W1, b1, ..., WL, bL, and with
        batch norm g1, ..., g_{L-1}, mean1, var1, ..., mean_{L-1}, var_{L-1} (model.npz's members)."""
        hidden = range(1, self.n_layers)
        norms = [f"g{l}" for l in hidden] + [f"{kind}{l}" for l in hidden for kind in ("mean", "var")]
        return parameter_names(self.n_layers) + (norms if self.batch_norm else [])

    def shape(self, name: str) -> tuple[int, int]:
        """The shape of array `name`: W_l is n_l x n_{l-1}; b_l, g_l, mean_l and var_l are n_l x 1."""
        l = int(name.lstrip("Wbgmeanvr"))
        return (self.sizes[l], self.sizes[l - 1]) if name[0] == "W" else (self.sizes[l], 1)


def init_parameters(arch: Architecture, init: str, rng: np.random.Generator):
    """Host arrays named and shaped as arch.names say: [W1, b1, W2, b2, ...], W_l n_l x n_{l-1}, b_l
    n_l x 1; with batch norm then every g_l = 1, mean_l = 0 and var_l = 1 (n_l x 1 each).

    "uniform" is the notebook's: every W and b drawn from U(-0.5, 0.5).
    "he" draws W_l from N(0, 2 / n_{l-1}) (He et al. 2015, suited to ReLU) and sets b_l = 0.
    Drawn on the host in float64 and then cast, so a seed gives the same start on every device.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: choose one of {', '.join(INITS)}")
    params = []
    for n_in, n_out in zip(arch.sizes[:-1], arch.sizes[1:]):
        if init == "uniform":
            W = rng.random((n_out, n_in)) - 0.5
            b = rng.random((n_out, 1)) - 0.5
        else:
            W = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
            b = np.zeros((n_out, 1))
        params += [W.astype(arch.dtype), b.astype(arch.dtype)]
    for name in arch.names[len(params) :]:
        params.append(np.full(arch.shape(name), 0 if name.startswith("mean") else 1, dtype=arch.dtype))
    return params


def parameter_names(n_layers: int) -> list[str]:
    """["W1", "b1", ..., "WL", "bL"]."""
    return [f"{kind}{l}" for l in range(1, n_layers + 1) for kind in ("W", "b")]
