"""`Arrays`: what Network.forward and Network.backward return, the notebook's arrays by name (A0, Z1,
A1, ..., dZ2, dW2, db2, ...), printed one line per array with its shape, dtype and equation."""

from __future__ import annotations

import re

import numpy as np

_ARRAY_NAME = re.compile(r"(A|Z|M|Yhat|s|dZ|dY|dW|db|dg)(\d+)")  # A0, Z1, dW2, ...: the kind and the layer


class Arrays(dict):
    """Named arrays in the order they were made: A0, Z1, A1, ... from forward (with M0, M1, ... when
    there are dropout masks), dZ2, dW2, db2, ... from backward. A dict; printed as one line per array with its shape, dtype and equation (docs/math.md)."""

    def __repr__(self) -> str:
        L = max((int(match.group(2)) for match in map(_ARRAY_NAME.fullmatch, self) if match), default=0)
        norm = any(name.startswith(("Yhat", "dY")) for name in self)  # batch norm (nn_gpu.batch_norm)
        rows = [
            (
                name,
                " x ".join(map(str, np.shape(a))),
                str(getattr(a, "dtype", type(a).__name__)),
                equation(name, L, norm),
            )
            for name, a in self.items()
        ]
        widths = [max((len(row[k]) for row in rows), default=0) for k in range(3)]
        return "\n".join(f"{n:<{widths[0]}}  {s:>{widths[1]}}  {d:<{widths[2]}}  {e}".rstrip() for n, s, d, e in rows)

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython and Jupyter print a dict subclass this way
        printer.text(repr(self))


def equation(name: str, L: int, norm: bool = False) -> str:
    """What array `name` (A0, Z1, dW2, ...) of an L-layer network holds, in docs/math.md's notation;
    norm: its hidden layers have batch norm."""
    match = _ARRAY_NAME.fullmatch(name)
    if match is None:
        return ""
    kind, l = match.group(1), int(match.group(2))
    if kind == "A":
        return "X: pixels / 255, one column per sample" if l == 0 else f"{'ReLU' if l < L else 'softmax'}(Z{l})"
    if kind == "M":
        return f"dropout mask D{l} / (1 - p{l}), D{l} ~ Bernoulli(1 - p{l}); A{l} is multiplied by it"
    if kind == "dZ":
        return f"A{L} - Y" if l == L else f"W{l + 1}^T dZ{l + 1} * ReLU'(Z{l})"
    hidden_norm = norm and l < L
    before = f"W{l + 1}^T dY{l + 1}" if norm and l + 1 < L else f"W{l + 1}^T dZ{l + 1}"
    return {
        "Yhat": f"(W{l} A{l - 1} - mean) s{l}: normalised over the batch",
        "s": f"1 / sqrt(variance + eps) of W{l} A{l - 1}, per unit",
        "Z": f"g{l} Yhat{l} + b{l}" if hidden_norm else f"W{l} A{l - 1} + b{l}",
        "dY": f"s{l} (g{l} dZ{l} - mean(g{l} dZ{l}) - Yhat{l} mean(g{l} dZ{l} Yhat{l})), dZ{l} = {before} * ReLU'(Z{l})",
        "dW": f"{'dY' if hidden_norm else 'dZ'}{l} A{l - 1}^T / m",
        "db": f"sum over samples of dZ{l} / m",
        "dg": f"sum over samples of dZ{l} Yhat{l} / m",
    }[kind]
