"""model.npz: the trained parameters and what is needed to rebuild the network.

Keys: `format` ("nn_gpu-model"), `hidden` (int64 array of hidden widths), `dtype` (a string),
and W1, b1, ..., WL, bL as plain float arrays with the shapes of nn_gpu.model.init_parameters.
Written atomically; read with allow_pickle=False, so loading never runs code, and checked key by
key: anything else raises ModelFileError with one line naming the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nn_gpu.errors import ModelFileError
from nn_gpu.files import write_atomically
from nn_gpu.model import Architecture

FORMAT = "nn_gpu-model"
_DTYPES = ("float32", "float64")


def parameter_names(n_layers: int) -> list[str]:
    """["W1", "b1", ..., "WL", "bL"]."""
    return [f"{kind}{l}" for l in range(1, n_layers + 1) for kind in ("W", "b")]


def save_model(path: Path, arch: Architecture, params) -> None:
    """Write host parameters [W1, b1, ...] and their architecture to `path` atomically."""
    arrays = dict(zip(parameter_names(len(arch.sizes) - 1), params))
    header = {
        "format": np.array(FORMAT),
        "hidden": np.array(arch.hidden, dtype=np.int64),
        "dtype": np.array(arch.dtype),
    }
    write_atomically(Path(path), lambda f: np.savez(f, **header, **arrays))


def load_model(path: Path) -> tuple[Architecture, list[np.ndarray]]:
    """(architecture, host parameters) from a model.npz, or ModelFileError saying what is wrong."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ModelFileError(f"{path}: not an nn_gpu model file (a single array, not an .npz archive)")
            with npz:
                arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path}: not an nn_gpu model file ({' '.join(str(error).split())})") from None
    if str(arrays.get("format", "")) != FORMAT:
        raise ModelFileError(f"{path}: not an nn_gpu model file (no format key {FORMAT!r})")
    hidden, dtype = arrays.get("hidden", np.array([])), str(arrays.get("dtype", ""))
    if hidden.size == 0 or hidden.ndim != 1 or hidden.dtype.kind not in "iu" or (hidden < 1).any():
        raise ModelFileError(f"{path}: 'hidden' must be a list of positive layer widths")
    if dtype not in _DTYPES:
        raise ModelFileError(f"{path}: dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
    arch = Architecture(tuple(int(h) for h in hidden), dtype)
    names = parameter_names(len(arch.sizes) - 1)
    expected = set(names) | {"format", "hidden", "dtype"}
    if set(arrays) != expected:
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise ModelFileError(f"{path}: keys differ from an nn_gpu model: missing {missing}, unexpected {extra}")
    params = []
    for name, (n_in, n_out) in zip(names, _shapes(arch)):
        array = arrays[name]
        shape = (n_out, n_in) if name.startswith("W") else (n_out, 1)
        if array.shape != shape or array.dtype != np.dtype(dtype):
            raise ModelFileError(f"{path}: {name} is {array.dtype} {array.shape}, expected {dtype} {shape}")
        if not np.isfinite(array).all():
            raise ModelFileError(f"{path}: {name} holds non-finite values")
        params.append(array)
    return arch, params


def _shapes(arch: Architecture):
    """(n_in, n_out) twice per layer, once for W and once for b."""
    for pair in zip(arch.sizes[:-1], arch.sizes[1:]):
        yield from (pair, pair)
