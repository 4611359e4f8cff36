"""model.npz and checkpoint.npz: parameters, and what is needed to rebuild the network or the run.

model.npz keys: `format` ("nn_gpu-model"), `hidden` (int64 array of hidden widths), `dtype` (a
string), `inputs` (n0, an int64 scalar), `classes` (the C labels, int64 or strings; class k is
classes[k]), and W1, b1, ..., WL, bL as plain float arrays with the shapes of
nn_gpu.architecture.init_parameters; a network with batch norm also holds each hidden layer's scale g_l
and running statistics mean_l and var_l (n_l x 1 each; nn_gpu.batch_norm), and is known by g1. Files written before `inputs` and `classes` existed are digit models:
784 inputs, classes 0..9. A model of a CSV table (nn_gpu.table) also holds `features` (the n0 column
names), `label_column`, `scale` and its `shift` and `divisor` (n0 float64 each), all or none. A model written by train.py also says what it was trained on:
`data` (the source's name) and `trained_on` (uint64, a hash of each training image,
nn_gpu.data.image_hashes), so predict.py can tell when it is asked to predict its own training set.
checkpoint.npz holds the model's keys plus `velocity` (the optimiser's flat buffer: SGD's velocity,
or Adam's first moment m, with its second moment v in `second_moment`), `best` (the parameters at
the best dev accuracy, flat, then their running statistics), `average` with --average-weights (the
weights' moving average, as `best`), `progress` and `config` (JSON text: nn_gpu.training.Progress and the
run's settings), and, from train.py, `data` and `trained_on` as a model does, so that a resumed run
can refuse data whose training rows are not the run's.

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
from typing import NamedTuple

import numpy as np

from nn_gpu.architecture import DTYPES, Architecture
from nn_gpu.config import ConfigError, RunConfig
from nn_gpu.errors import ModelFileError, one_line
from nn_gpu.safe_io import input_problem, write_atomically
from nn_gpu.shapes import N_CLASSES, N_PIXELS
from nn_gpu.table import DIGITS, SCALES, Encoding, Scaling
from nn_gpu.training import Progress

FORMAT = "nn_gpu-model"
_HEADER = ("format", "hidden", "dtype")
_SHAPE = ("inputs", "classes")  # optional, both or neither: absent from digit models before issue 19
_CHECKPOINT = ("velocity", "best", "progress", "config")
_PROVENANCE = ("data", "trained_on")  # optional: both or neither
_TEXT = ("format", "dtype", "progress", "config", "data", "label_column", "scale")  # 0-d strings
_SMALL = 1 << 20  # bytes: the most a header member (format, hidden, dtype, progress, config) may hold
_ZIP_MAGIC, _NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"  # how an .npz archive and a .npy array begin
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


@dataclass(frozen=True)
class TrainingData:
    """What a model was trained on: the data source's name, and a uint64 hash of each training image."""

    source: str
    hashes: np.ndarray


def _model_arrays(arch: Architecture, params, trained_on: TrainingData | None = None, encoding=None) -> dict:
    """The members of a model file; encoding None: classes 0..C-1 and no table."""
    encoding = encoding or Encoding(np.arange(arch.n_classes))
    arrays = {
        "format": np.array(FORMAT),
        "hidden": np.array(arch.hidden, dtype=np.int64),
        "dtype": np.array(arch.dtype),
        "inputs": np.array(arch.n_inputs, dtype=np.int64),
        "classes": np.asarray(encoding.classes),
        **dict(zip(arch.names, params)),
    }
    if encoding.table:
        scaling = encoding.scaling
        arrays.update(
            features=np.array(encoding.features, dtype=str),
            label_column=np.array(encoding.label_column),
            scale=np.array(scaling.kind),
            shift=np.asarray(scaling.shift, dtype=np.float64),
            divisor=np.asarray(scaling.divisor, dtype=np.float64),
        )
    if trained_on is not None:
        arrays.update(data=np.array(trained_on.source), trained_on=np.asarray(trained_on.hashes, dtype=np.uint64))
    return arrays


def save_model(
    path: Path, arch: Architecture, params, trained_on: TrainingData | None = None, encoding: Encoding | None = None
) -> None:
    """Write host parameters [W1, b1, ...] and their architecture (and what they were trained on, and
    the classes and scaling of their data) to `path` atomically."""
    arrays = _model_arrays(arch, params, trained_on, encoding)
    write_atomically(Path(path), lambda f: np.savez(f, **arrays))


def save_checkpoint(
    path: Path,
    arch: Architecture,
    params,
    moments,
    best,
    progress: Progress,
    config: RunConfig,
    encoding=None,
    trained_on: TrainingData | None = None,
    average=None,
) -> None:
    """Write a resumable checkpoint (host arrays; moments: the optimiser's state, [velocity] or [m, v];
    best: the flat parameters at the best dev accuracy, or the current ones before any; encoding and
    trained_on as in save_model: a resumed run checks its data against them; average: the weights' moving
    average, as `best`, or None) to `path` atomically."""
    state = progress.to_dict()
    arrays = {
        **_model_arrays(arch, params, trained_on, encoding),
        "velocity": moments[0],
        **({"second_moment": moments[1]} if len(moments) > 1 else {}),
        "best": best,
        **({} if average is None else {"average": average}),
        "progress": np.array(json.dumps(state)),
        "config": np.array(json.dumps(config.to_dict())),
    }
    write_atomically(Path(path), lambda f: np.savez(f, **arrays))


def load_model(path: Path) -> tuple[Architecture, list[np.ndarray]]:
    """(architecture, host parameters) from a model.npz, or ModelFileError saying what is wrong."""
    arch, params, *_ = load_trained_model(path)
    return arch, params


def load_trained_model(path: Path) -> tuple[Architecture, list[np.ndarray], TrainingData | None, Encoding]:
    """(architecture, host parameters, what they were trained on, the data's Encoding) from one read of a
    model.npz; what it was trained on is None when the file does not say (a model saved from Python)."""
    arch, arrays = _load(Path(path), extra=())
    return arch, [arrays[name] for name in arch.names], _trained_on(arrays), _encoding(arrays)


def _trained_on(arrays: dict) -> TrainingData | None:
    return TrainingData(str(arrays["data"]), arrays["trained_on"]) if "trained_on" in arrays else None


def _encoding(arrays: dict) -> Encoding:
    """The Encoding a file's members hold (classes 0..9 for a digit model written before they were stored)."""
    classes = arrays["classes"] if "classes" in arrays else DIGITS
    if "features" not in arrays:
        return Encoding(classes)
    scaling = Scaling(str(arrays["scale"]), arrays["shift"], arrays["divisor"])
    return Encoding(classes, tuple(str(f) for f in arrays["features"]), str(arrays["label_column"]), scaling)


class Checkpoint(NamedTuple):
    """A checkpoint.npz's contents: moments are [velocity], or Adam's [m, v]; progress.best_params holds
    the saved best parameters (host, flat) once a dev evaluation has been made; config is the run's
    settings, checked as any RunConfig is; trained_on is None in a checkpoint written before it was stored."""

    arch: Architecture
    params: list[np.ndarray]
    moments: list[np.ndarray]
    progress: Progress
    config: RunConfig
    encoding: Encoding
    trained_on: TrainingData | None


def load_checkpoint(path: Path) -> Checkpoint:
    """A checkpoint.npz's contents (Checkpoint), or ModelFileError saying what is wrong."""
    path = Path(path)
    arch, arrays = _load(path, extra=_CHECKPOINT)
    try:
        progress = Progress(**json.loads(str(arrays["progress"])))
        config = json.loads(str(arrays["config"]))
        if not isinstance(config, dict) or not isinstance(progress.iteration, int) or progress.iteration < 0:
            raise ValueError("config must be an object and iteration a count")
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"{path}: damaged training state ({one_line(error)})") from None
    try:
        config = RunConfig.from_dict(config)
    except (ConfigError, TypeError) as error:
        raise ModelFileError(f"{path}: damaged training state (saved {one_line(error)})") from None
    if (config.hidden, config.dtype) != (arch.hidden, arch.dtype):
        hidden = ",".join(map(str, config.hidden))
        raise ModelFileError(
            f"{path}: damaged training state (saved hidden {hidden} {config.dtype} differ from the saved network's)"
        )
    params = [arrays[name] for name in arch.names]
    progress.best_params = None if progress.best_iteration is None else arrays["best"]
    progress.average = arrays.get("average")
    moments = [arrays[name] for name in ("velocity", "second_moment") if name in arrays]
    return Checkpoint(arch, params, moments, progress, config, _encoding(arrays), _trained_on(arrays))


def _load(path: Path, extra: tuple[str, ...]) -> tuple[Architecture, dict[str, np.ndarray]]:
    """The architecture and every array of an nn_gpu .npz, each checked before any is read."""
    problem = input_problem(path)
    if problem:
        raise ModelFileError(f"{path}: {problem}")
    try:
        with open(path, "rb") as f:
            start = f.read(len(_NPY_MAGIC))
            if not start.startswith(_ZIP_MAGIC):  # numpy would call anything else pickled data
                what = "a single array" if start == _NPY_MAGIC else "not a .npz archive"
                raise ModelFileError(
                    f"{path}: not an nn_gpu model file ({what}; train.py writes DIR/model.npz and DIR/best_model.npz)"
                )
            f.seek(0)
            npz = np.load(f, allow_pickle=False)
            with npz:
                headers = {key: _header(path, npz, key) for key in npz.files}
                small = {key: npz[key] for key in (*_HEADER, *_SHAPE) if key in headers and headers[key][2] <= _SMALL}
                arch = _architecture(path, small, batch_norm="g1" in headers)
                expected = _expected(arch, extra, set(headers))
                _check_headers(path, headers, expected)
                arrays = {key: npz[key] for key in headers}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path}: not an nn_gpu model file ({one_line(error)})") from None
    for name, (shape, _) in expected.items():
        if shape is not None and not np.isfinite(arrays[name]).all():  # the float arrays: parameters, velocity
            raise ModelFileError(f"{path}: {name} holds non-finite values")
    if "features" in arrays:
        features = arrays["features"]
        if features.shape != (arch.n_inputs,) or features.dtype.kind != "U":
            raise ModelFileError(f"{path}: features must name the {arch.n_inputs} input columns")
        if str(arrays["scale"]) not in SCALES or not (arrays["divisor"] > 0).all():
            raise ModelFileError(f"{path}: scale must be one of {', '.join(SCALES)}, with divisors above 0")
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


def _architecture(path: Path, small: dict, batch_norm: bool) -> Architecture:
    if str(small.get("format", "")) != FORMAT:
        raise ModelFileError(f"{path}: not an nn_gpu model file (no format key {FORMAT!r})")
    hidden, dtype = small.get("hidden", np.array([])), str(small.get("dtype", ""))
    if hidden.size == 0 or hidden.ndim != 1 or hidden.dtype.kind not in "iu" or (hidden < 1).any():
        raise ModelFileError(f"{path}: 'hidden' must be a list of positive layer widths")
    if dtype not in DTYPES:
        raise ModelFileError(f"{path}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    hidden = tuple(int(h) for h in hidden)
    if "inputs" not in small and "classes" not in small:
        return Architecture(hidden, dtype, batch_norm=batch_norm)  # a digit model from before issue 19
    inputs, classes = small.get("inputs", np.array(0)), small.get("classes", np.array([]))
    if inputs.shape != () or inputs.dtype.kind not in "iu" or inputs < 1:
        raise ModelFileError(f"{path}: 'inputs' must be the number of input features, a whole number of at least 1")
    if classes.ndim != 1 or classes.size == 0 or classes.dtype.kind not in "iuU":
        raise ModelFileError(f"{path}: 'classes' must list the class labels (whole numbers or text)")
    if classes.size > 1 and not (classes[1:] > classes[:-1]).all():
        raise ModelFileError(f"{path}: 'classes' must list each class label once, sorted")
    return Architecture(hidden, dtype, int(inputs), classes.size, batch_norm)


def _expected(
    arch: Architecture, extra: tuple[str, ...], present: set
) -> dict[str, tuple[tuple[int, ...] | None, str]]:
    """name: (shape, dtype) of every member the file must hold, given the names `present` in it (a
    checkpoint of Adam's holds second_moment too; a table's model, its Encoding's members; a digit
    model may lack inputs and classes); shape None for a header member."""
    expected = {name: (None, "") for name in _HEADER}
    table, adam = "features" in present, "second_moment" in present
    if table or present.intersection(_SHAPE) or (arch.n_inputs, arch.n_classes) != (N_PIXELS, N_CLASSES):
        expected.update({name: (None, "") for name in _SHAPE})
    if table:
        features = ((arch.n_inputs,), "float64")
        expected.update(
            features=(None, ""), label_column=(None, ""), scale=(None, ""), shift=features, divisor=features
        )
    for name in arch.names:
        expected[name] = (arch.shape(name), arch.dtype)
    if extra:
        flat = ((arch.n_parameters,), arch.dtype)
        state = ((arch.n_parameters + arch.n_statistics,), arch.dtype)  # the parameters and running statistics
        expected.update(velocity=flat, best=state, progress=(None, ""), config=(None, ""))
        if adam:
            expected.update(second_moment=flat)
        if "average" in present:
            expected.update(average=state)
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


def picture_problem(model: Path, arch: Architecture, encoding: Encoding) -> str | None:
    """Why the model in `model` cannot read a 28 x 28 picture (a model of a table), or None when it can."""
    if encoding.table or not arch.pictures:
        return f"{model} takes {arch.n_inputs} features, not a 28 x 28 picture"
    return None
