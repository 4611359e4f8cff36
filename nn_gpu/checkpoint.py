"""model.npz and checkpoint.npz: parameters, and what is needed to rebuild the network or the run.

model.npz keys: `format` ("nn_gpu-model"), `hidden` (int64 array of hidden widths), `dtype` (a
string), and W1, b1, ..., WL, bL as plain float arrays with the shapes of
nn_gpu.model.init_parameters. checkpoint.npz holds the same keys plus `velocity` (the optimiser's
flat buffer), `progress` and `config` (JSON text: nn_gpu.training.Progress and the run's settings).

Both are written atomically and read with allow_pickle=False, so loading never runs code, and are
checked key by key: anything else raises ModelFileError with one line naming the file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from nn_gpu.errors import ModelFileError
from nn_gpu.files import write_atomically
from nn_gpu.model import Architecture
from nn_gpu.training import Progress

FORMAT = "nn_gpu-model"
_DTYPES = ("float32", "float64")
_HEADER = ("format", "hidden", "dtype")
_CHECKPOINT = ("velocity", "progress", "config")


def parameter_names(n_layers: int) -> list[str]:
    """["W1", "b1", ..., "WL", "bL"]."""
    return [f"{kind}{l}" for l in range(1, n_layers + 1) for kind in ("W", "b")]


def _model_arrays(arch: Architecture, params) -> dict:
    return {
        "format": np.array(FORMAT),
        "hidden": np.array(arch.hidden, dtype=np.int64),
        "dtype": np.array(arch.dtype),
        **dict(zip(parameter_names(len(arch.sizes) - 1), params)),
    }


def save_model(path: Path, arch: Architecture, params) -> None:
    """Write host parameters [W1, b1, ...] and their architecture to `path` atomically."""
    arrays = _model_arrays(arch, params)
    write_atomically(Path(path), lambda f: np.savez(f, **arrays))


def save_checkpoint(path: Path, arch: Architecture, params, velocity, progress: Progress, config: dict) -> None:
    """Write a resumable checkpoint (host arrays) to `path` atomically."""
    state = progress.to_dict()
    arrays = {
        **_model_arrays(arch, params),
        "velocity": velocity,
        "progress": np.array(json.dumps(state)),
        "config": np.array(json.dumps(config)),
    }
    write_atomically(Path(path), lambda f: np.savez(f, **arrays))


def load_model(path: Path) -> tuple[Architecture, list[np.ndarray]]:
    """(architecture, host parameters) from a model.npz, or ModelFileError saying what is wrong."""
    path = Path(path)
    return _check_model(path, _read(path), extra=())


def load_checkpoint(path: Path) -> tuple[Architecture, list[np.ndarray], np.ndarray, Progress, dict]:
    """(architecture, parameters, velocity, progress, config) from a checkpoint.npz."""
    path = Path(path)
    arrays = _read(path)
    arch, params = _check_model(path, arrays, extra=_CHECKPOINT)
    velocity = arrays["velocity"]
    size = sum(p.size for p in params)
    if velocity.shape != (size,) or velocity.dtype != np.dtype(arch.dtype) or not np.isfinite(velocity).all():
        raise ModelFileError(
            f"{path}: velocity is {velocity.dtype} {velocity.shape}, expected finite {arch.dtype} ({size},)"
        )
    try:
        progress = Progress(**json.loads(str(arrays["progress"])))
        config = json.loads(str(arrays["config"]))
        if not isinstance(config, dict) or not isinstance(progress.iteration, int) or progress.iteration < 0:
            raise ValueError("config must be an object and iteration a count")
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"{path}: damaged training state ({' '.join(str(error).split())})") from None
    return arch, params, velocity, progress, config


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ModelFileError(f"{path}: not an nn_gpu model file (a single array, not an .npz archive)")
            with npz:
                return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path}: not an nn_gpu model file ({' '.join(str(error).split())})") from None


def _check_model(path: Path, arrays: dict, extra: tuple[str, ...]) -> tuple[Architecture, list[np.ndarray]]:
    if str(arrays.get("format", "")) != FORMAT:
        raise ModelFileError(f"{path}: not an nn_gpu model file (no format key {FORMAT!r})")
    hidden, dtype = arrays.get("hidden", np.array([])), str(arrays.get("dtype", ""))
    if hidden.size == 0 or hidden.ndim != 1 or hidden.dtype.kind not in "iu" or (hidden < 1).any():
        raise ModelFileError(f"{path}: 'hidden' must be a list of positive layer widths")
    if dtype not in _DTYPES:
        raise ModelFileError(f"{path}: dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
    arch = Architecture(tuple(int(h) for h in hidden), dtype)
    names = parameter_names(len(arch.sizes) - 1)
    expected = set(names) | set(_HEADER) | set(extra)
    if set(arrays) != expected:
        missing, unexpected = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise ModelFileError(f"{path}: keys differ from an nn_gpu file: missing {missing}, unexpected {unexpected}")
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
