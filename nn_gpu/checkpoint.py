"""model.npz and checkpoint.npz: parameters, and what is needed to rebuild the network or the run.

model.npz keys: `format` ("nn_gpu-model"), `hidden` (int64 array of hidden widths), `dtype` (a
string), and W1, b1, ..., WL, bL as plain float arrays with the shapes of
nn_gpu.model.init_parameters. A model written by train.py also says what it was trained on:
`data` (the source's name) and `trained_on` (uint64, a hash of each training image,
nn_gpu.data.image_hashes), so predict.py can tell when it is asked to predict its own training set.
checkpoint.npz holds the model's keys plus `velocity` (the optimiser's flat buffer: SGD's velocity,
or Adam's first moment m, with its second moment v in `second_moment`), `best` (the parameters at
the best dev accuracy, flat), `progress` and `config` (JSON text: nn_gpu.training.Progress and the
run's settings).

Both are written atomically and read with allow_pickle=False, so loading never runs code, and are
checked key by key: anything else raises ModelFileError with one line naming the file. The checks
run on the members' .npy headers first (names, shapes, dtypes, and sizes against the archive's
directory), so no member is decompressed until every one is known to be what it must be: a 3 GB
extra member or a header claiming a huge shape costs nothing.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nn_gpu.errors import ModelFileError, one_line
from nn_gpu.model import DTYPES, Architecture, parameter_names
from nn_gpu.safe_io import input_problem, write_atomically
from nn_gpu.training import Progress

FORMAT = "nn_gpu-model"
_HEADER = ("format", "hidden", "dtype")
_CHECKPOINT = ("velocity", "best", "progress", "config")
_PROVENANCE = ("data", "trained_on")  # optional: both or neither
_TEXT = ("format", "dtype", "progress", "config", "data")  # 0-d strings
_SMALL = 1 << 20  # bytes: the most a header member (format, hidden, dtype, progress, config) may hold
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


@dataclass(frozen=True)
class TrainingData:
    """What a model was trained on: the data source's name, and a uint64 hash of each training image."""

    source: str
    hashes: np.ndarray


def _model_arrays(arch: Architecture, params, trained_on: TrainingData | None = None) -> dict:
    arrays = {
        "format": np.array(FORMAT),
        "hidden": np.array(arch.hidden, dtype=np.int64),
        "dtype": np.array(arch.dtype),
        **dict(zip(parameter_names(arch.n_layers), params)),
    }
    if trained_on is not None:
        arrays.update(data=np.array(trained_on.source), trained_on=np.asarray(trained_on.hashes, dtype=np.uint64))
    return arrays


def save_model(path: Path, arch: Architecture, params, trained_on: TrainingData | None = None) -> None:
    """Write host parameters [W1, b1, ...] and their architecture (and what they were trained on) to
    `path` atomically."""
    arrays = _model_arrays(arch, params, trained_on)
    write_atomically(Path(path), lambda f: np.savez(f, **arrays))


def save_checkpoint(path: Path, arch: Architecture, params, moments, best, progress: Progress, config: dict) -> None:
    """Write a resumable checkpoint (host arrays; moments: the optimiser's state, [velocity] or [m, v];
    best: the flat parameters at the best dev accuracy, or the current ones before any) to `path` atomically."""
    state = progress.to_dict()
    arrays = {
        **_model_arrays(arch, params),
        "velocity": moments[0],
        **({"second_moment": moments[1]} if len(moments) > 1 else {}),
        "best": best,
        "progress": np.array(json.dumps(state)),
        "config": np.array(json.dumps(config)),
    }
    write_atomically(Path(path), lambda f: np.savez(f, **arrays))


def load_model(path: Path) -> tuple[Architecture, list[np.ndarray]]:
    """(architecture, host parameters) from a model.npz, or ModelFileError saying what is wrong."""
    arch, params, _ = load_trained_model(path)
    return arch, params


def load_trained_model(path: Path) -> tuple[Architecture, list[np.ndarray], TrainingData | None]:
    """(architecture, host parameters, what they were trained on) from one read of a model.npz; the last
    is None when the file does not say (a model saved from Python)."""
    arch, arrays = _load(Path(path), extra=())
    trained_on = TrainingData(str(arrays["data"]), arrays["trained_on"]) if "trained_on" in arrays else None
    return arch, [arrays[name] for name in parameter_names(arch.n_layers)], trained_on


def load_checkpoint(path: Path) -> tuple[Architecture, list[np.ndarray], list[np.ndarray], Progress, dict]:
    """(architecture, parameters, moments, progress, config) from a checkpoint.npz (moments: [velocity],
    or Adam's [m, v]); progress.best_params
    holds the saved best parameters (host, flat) when a dev evaluation has been made.

    config is the run's settings as saved; nn_gpu.cli checks them as it checks its flags.
    """
    path = Path(path)
    arch, arrays = _load(path, extra=_CHECKPOINT)
    try:
        progress = Progress(**json.loads(str(arrays["progress"])))
        config = json.loads(str(arrays["config"]))
        if not isinstance(config, dict) or not isinstance(progress.iteration, int) or progress.iteration < 0:
            raise ValueError("config must be an object and iteration a count")
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"{path}: damaged training state ({one_line(error)})") from None
    params = [arrays[name] for name in parameter_names(arch.n_layers)]
    progress.best_params = None if progress.best_iteration is None else arrays["best"]
    moments = [arrays[name] for name in ("velocity", "second_moment") if name in arrays]
    return arch, params, moments, progress, config


def _load(path: Path, extra: tuple[str, ...]) -> tuple[Architecture, dict[str, np.ndarray]]:
    """The architecture and every array of an nn_gpu .npz, each checked before any is read."""
    problem = input_problem(path)
    if problem:
        raise ModelFileError(f"{path}: {problem}")
    try:
        with open(path, "rb") as f:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ModelFileError(f"{path}: not an nn_gpu model file (a single array, not an .npz archive)")
            with npz:
                headers = {key: _header(path, npz, key) for key in npz.files}
                small = {
                    key: npz[key]
                    for key in ("format", "hidden", "dtype")
                    if key in headers and headers[key][2] <= _SMALL
                }
                arch = _architecture(path, small)
                expected = _expected(arch, extra, adam="second_moment" in headers)
                _check_headers(path, headers, expected)
                arrays = {key: npz[key] for key in headers}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path}: not an nn_gpu model file ({one_line(error)})") from None
    for name, (shape, _) in expected.items():
        if shape is not None and not np.isfinite(arrays[name]).all():  # the float arrays: parameters, velocity
            raise ModelFileError(f"{path}: {name} holds non-finite values")
    return arch, arrays


def _header(path: Path, npz, key: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, bytes of data) of one member, from its .npy header alone; checked against the
    size the archive's directory gives it, so a header cannot claim more than the member holds."""
    name = key if key in npz.zip.namelist() else f"{key}.npy"
    with npz.zip.open(name) as member:
        version = np.lib.format.read_magic(member)
        if version not in _HEADER_READERS:
            raise ValueError(f"{key}: .npy format version {version} is not supported")
        shape, _, dtype = _HEADER_READERS[version](member)
        offset = member.tell()
    if dtype.hasobject:
        raise ModelFileError(
            f"{path}: not an nn_gpu model file ({key} holds Python objects, which are never loaded: allow_pickle=False)"
        )
    size, held = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, npz.zip.getinfo(name).file_size - offset
    if size != held:
        raise ModelFileError(f"{path}: {key}: its header claims {size:,} bytes of data, but the member holds {held:,}")
    return tuple(shape), dtype, size


def _architecture(path: Path, small: dict) -> Architecture:
    if str(small.get("format", "")) != FORMAT:
        raise ModelFileError(f"{path}: not an nn_gpu model file (no format key {FORMAT!r})")
    hidden, dtype = small.get("hidden", np.array([])), str(small.get("dtype", ""))
    if hidden.size == 0 or hidden.ndim != 1 or hidden.dtype.kind not in "iu" or (hidden < 1).any():
        raise ModelFileError(f"{path}: 'hidden' must be a list of positive layer widths")
    if dtype not in DTYPES:
        raise ModelFileError(f"{path}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return Architecture(tuple(int(h) for h in hidden), dtype)


def _expected(arch: Architecture, extra: tuple[str, ...], adam: bool) -> dict[str, tuple[tuple[int, ...] | None, str]]:
    """name: (shape, dtype) of every member the file must hold (a checkpoint of Adam's: second_moment
    too); shape None for a header member."""
    expected = {name: (None, "") for name in _HEADER}
    for name, (n_in, n_out) in zip(parameter_names(arch.n_layers), _shapes(arch)):
        expected[name] = ((n_out, n_in) if name.startswith("W") else (n_out, 1), arch.dtype)
    if extra:
        flat = ((arch.n_parameters,), arch.dtype)
        expected.update(velocity=flat, best=flat, progress=(None, ""), config=(None, ""))
        if adam:
            expected.update(second_moment=flat)
    return expected


def _check_headers(path: Path, headers: dict, expected: dict) -> None:
    """ModelFileError unless the members are exactly `expected`, each with its shape and dtype, plus
    the optional pair `data` (a short text) and `trained_on` (a uint64 list)."""
    provenance = [name for name in _PROVENANCE if name in headers]
    if provenance:
        if len(provenance) != len(_PROVENANCE):
            raise ModelFileError(f"{path}: {provenance[0]} without {set(_PROVENANCE).difference(provenance).pop()}")
        shape, dtype, _ = headers["trained_on"]
        if len(shape) != 1 or dtype != np.uint64:
            raise ModelFileError(f"{path}: trained_on is {dtype} {shape}, expected a uint64 list")
        expected = {**expected, "data": (None, "")}
        headers = {name: header for name, header in headers.items() if name != "trained_on"}
    if set(headers) != set(expected):
        missing, unexpected = sorted(set(expected) - set(headers)), sorted(set(headers) - set(expected))
        raise ModelFileError(f"{path}: keys differ from an nn_gpu file: missing {missing}, unexpected {unexpected}")
    for name, (shape, dtype) in expected.items():
        found_shape, found_dtype, size = headers[name]
        if shape is None:
            if size > _SMALL or (name in _TEXT and (found_shape != () or found_dtype.kind != "U")):
                raise ModelFileError(f"{path}: {name} is {found_dtype} {found_shape}, expected a short text")
        elif found_shape != shape or found_dtype != np.dtype(dtype):
            raise ModelFileError(f"{path}: {name} is {found_dtype} {found_shape}, expected {dtype} {shape}")


def _shapes(arch: Architecture):
    """(n_in, n_out) twice per layer, once for W and once for b."""
    for pair in zip(arch.sizes[:-1], arch.sizes[1:]):
        yield from (pair, pair)
