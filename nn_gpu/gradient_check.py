"""The gradient check: each gradient `backward` gives, against centred finite differences of the loss.

For a checked entry i of a parameter p (W1, b1, ..., WL, bL), with L the mean cross-entropy on (X, y):

    numeric_i = (L(p + eps e_i) - L(p - eps e_i)) / (2 eps)          (eps = 1e-5)

The differences are taken in float64, on a float64 copy of the network on its device, whatever the
network's own dtype (as Chainer's check_backward does with dtype=float64): float32 differences would
measure float32's rounding, not the equations. A parameter's error is

    max_i |analytic_i - numeric_i| / max_i max(|analytic_i|, |numeric_i|)

the largest difference against the parameter's largest gradient, so that an entry whose gradient is
nearly 0 (a pixel that is almost always blank) does not divide by nearly nothing.

ReLU has a kink at 0, where it has no derivative: an entry whose perturbation moves a hidden Z_l
across 0, or off exactly 0, gets a finite difference that is no derivative, and is left out of the
error and counted in `at_kink`. It happens when some |Z_l| < eps, and in a fresh He-initialised
network (b = 0) whenever every input of a unit is 0 for some sample: then Z_l is exactly 0.

eps = 1e-5 balances the two errors of a difference in float64: truncation, of order eps^2, and the
loss's rounding divided by eps (at eps = 1e-6 that rounding reached 1.5e-7 of a 3-layer network's
largest gradient; at 1e-5, 1.5e-8). Tolerances, both from the largest error measured over 128
networks (1 to 3 hidden layers, He and uniform starts, batches of 16 to 4,096 sample images):
float64, 1e-7 (measured at most 1.5e-8); float32, 1e-5 (measured at most 5.6e-7: the float32
gradients carry float32's rounding, unit roundoff 6e-8, grown by the 784-term sums of W1 A0 and the
sums over samples). A wrong equation (a missing 1/m, a scalar db, ReLU' of the wrong layer) gives
errors of order 1.

`python scripts/gradcheck.py` runs it on a few images of the built-in sample, in seconds.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from nn_gpu.model import Network

if TYPE_CHECKING:
    import pandas as pd

TOLERANCES = {"float64": 1e-7, "float32": 1e-5}


def gradcheck(net: Network, X, y, eps: float = 1e-5, entries: int | None = 200, seed: int = 0) -> pd.DataFrame:
    """Check net.backward's gradients on X (n0 x m, one column per sample) and labels y (m).

    entries: how many entries of each parameter to check, drawn at random from `seed` (every entry
    of a smaller parameter; None: every entry of all). Returns a table, one row per parameter:
    parameter, shape, checked, at_kink, max_relative_error (module docstring) and passed (below the
    tolerance of the network's dtype, TOLERANCES, kept in the table's attrs["tolerance"]).
    """
    import pandas as pd  # the table: imported when a check is made, not by `import nn_gpu`

    grads = net.backward(net.forward(X, keep=True), y)
    twin = Network(
        dataclasses.replace(net.arch, dtype="float64"), net.device, [net.device.to_host(p) for p in net.arrays]
    )
    A0 = net.inputs(X).astype(np.float64)  # the very inputs the network saw, in float64
    y = net.labels(y, A0.shape[1])
    _, sides = _loss_and_sides(twin, A0, y)
    rng = np.random.default_rng(seed)
    rows = []
    for name, p in zip(twin.parameter_names, twin.params):
        flat = p.reshape(-1)  # a view: writing an entry perturbs the network
        chosen = (
            np.arange(p.size) if entries is None or p.size <= entries else np.sort(rng.choice(p.size, entries, False))
        )
        numeric, kink = np.empty(len(chosen)), np.zeros(len(chosen), dtype=bool)
        for k, i in enumerate(chosen):
            saved = float(flat[i])
            flat[i] = saved + eps
            up, up_sides = _loss_and_sides(twin, A0, y)
            flat[i] = saved - eps
            down, down_sides = _loss_and_sides(twin, A0, y)
            flat[i] = saved
            numeric[k] = (up - down) / (2 * eps)
            kink[k] = any(bool((a != b).any()) for a, b in zip(sides + sides, up_sides + down_sides))  # host sync
        analytic = net.device.to_host(grads[f"d{name}"]).reshape(-1)[chosen].astype(np.float64)
        analytic, numeric = analytic[~kink], numeric[~kink]
        scale = max(np.abs(analytic).max(initial=0), np.abs(numeric).max(initial=0))
        error = np.abs(analytic - numeric).max(initial=0) / scale if scale > 0 else 0.0
        rows.append(
            {
                "parameter": name,
                "shape": " x ".join(map(str, p.shape)),
                "checked": f"{len(chosen)} of {p.size}",
                "at_kink": int(kink.sum()),
                "max_relative_error": error,
                "passed": bool(error < TOLERANCES[net.arch.dtype]),
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["tolerance"] = TOLERANCES[net.arch.dtype]
    return table


def _loss_and_sides(net: Network, A0, y) -> tuple[float, list]:
    """(mean loss, [Z_l > 0 for each hidden layer l]): the loss, and on which side of ReLU's kink each
    hidden pre-activation lies."""
    cache = net.forward(A0, keep=True)
    _, loss, _ = net.device.ops.softmax_cross_entropy(cache[f"Z{net.n_layers}"], y)
    return float(loss.mean()), [cache[f"Z{l}"] > 0 for l in range(1, net.n_layers)]  # host sync
