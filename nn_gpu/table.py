"""Data beyond digits: a CSV table of numeric features and a label column, its classes and its scaling.

A table is a CSV whose first line names its columns: one is the label (`--label-column`, default
`label`), every other is a numeric feature. Labels may be any integers or strings; the C distinct
labels, sorted (np.unique), are the classes, and class k is the output unit k, so a prediction comes
back as the user's label: classes[argmax A_L]. Features are scaled per column, X' = (X - shift) /
divisor, with shift and divisor fitted on the training rows only (`Scaling.fit`, `--scale`):

    standard   shift = mean, divisor = standard deviation  (sklearn's StandardScaler)
    minmax     shift = min, divisor = max - min            (sklearn's MinMaxScaler, to [0, 1])
    none       shift = 0, divisor = 1

A constant feature gets divisor 1 (as sklearn does), so it becomes 0, never a division by 0.
`Encoding` holds all of it (classes, feature names, label column, scaling); model.npz stores it, so
predict.py scales new rows exactly as the training rows were and names the labels as the user did.
Digit images need none of this: their classes are 0..9 and their pixels are divided by 255 on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nn_gpu.errors import DataError, one_line

SCALES = ("standard", "minmax", "none")
DIGITS = np.arange(10)  # the classes of a digit dataset


@dataclass(frozen=True)
class Scaling:
    """X' = (X - shift) / divisor per feature: kind (one of SCALES), shift and divisor (n0 float64 each)."""

    kind: str
    shift: np.ndarray
    divisor: np.ndarray

    @classmethod
    def fit(cls, kind: str, features: np.ndarray) -> Scaling:
        """The scaling of `kind` fitted on features (m x n0, the training rows)."""
        features = np.asarray(features, dtype=np.float64)
        if kind == "standard":
            shift, spread = features.mean(axis=0), features.std(axis=0)
        elif kind == "minmax":
            shift, spread = features.min(axis=0), np.ptp(features, axis=0)
        elif kind == "none":
            shift, spread = np.zeros(features.shape[1]), np.ones(features.shape[1])
        else:
            raise ValueError(f"unknown scale {kind!r}: choose one of {', '.join(SCALES)}")
        return cls(kind, shift, np.where(spread > 0, spread, 1.0))

    def apply(self, features: np.ndarray) -> np.ndarray:
        """(features - shift) / divisor: m x n0 float64, for features m x n0."""
        return (np.asarray(features, dtype=np.float64) - self.shift) / self.divisor


@dataclass(frozen=True)
class Encoding:
    """How a model's data became X and y: classes (C labels; class k is classes[k]); for a table also
    the feature columns' names (n0), the label column's name and the scaling (None for digit images)."""

    classes: np.ndarray
    features: tuple[str, ...] | None = None
    label_column: str | None = None
    scaling: Scaling | None = None

    @property
    def table(self) -> bool:
        return self.features is not None


def is_table_header(cells: list[str], digit_widths: tuple[int, ...] = ()) -> bool:
    """Whether a CSV's first line names columns: some cell is a name (printable text that is not a
    number), or, for a line as wide as a row of digits (digit_widths), most cells are, so that one bad
    cell in a headerless row of pixels is reported as that, not taken for a header."""
    named = sum(bool(cell) and cell.isprintable() and not _is_number(cell) for cell in cells)
    return named > len(cells) / 2 if len(cells) in digit_widths else named > 0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_table(path, label_column: str | None, features: tuple[str, ...] | None = None):
    """(features m x n0 float64, labels (m,) as read or None, feature names) from a CSV table.

    label_column: the label's column name; with `features` (a model's, for predict.py) the label may be
    absent (then None) and the features are taken in that order. DataError with one line naming the
    file, and the line and column where it applies, for a missing column, an empty, non-numeric or
    non-finite feature, or a missing label.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"{path}: cannot read as a CSV table ({one_line(error)})") from None
    columns = [str(c) for c in frame.columns]
    if label_column not in columns and features is None:
        raise DataError(
            f"{path}: no column {label_column!r} holds the labels (columns: {_listed(columns)}); "
            "name the label column with --label-column NAME"
        )
    names = tuple(c for c in columns if c != label_column) if features is None else features
    missing = [name for name in names if name not in columns]
    if missing:
        raise DataError(f"{path}: the model's feature column {missing[0]!r} is missing (columns: {_listed(columns)})")
    if not names:
        raise DataError(f"{path}: no feature columns besides the label {label_column!r}")
    if len(frame) == 0:
        raise DataError(f"{path}: no rows, only a header")
    values = frame[list(names)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        cell = frame[names[column]].iloc[row]
        where = f"{path}: line {row + 2}, column {columns.index(names[column]) + 1} ({names[column]})"
        raise DataError(f"{where}: {'missing value' if not cell.strip() else repr(cell) + ' is not a finite number'}")
    labels = None
    if label_column in columns:
        text = frame[label_column].str.strip()
        empty = np.flatnonzero(text.to_numpy() == "")
        if len(empty):
            raise DataError(f"{path}: line {empty[0] + 2}: missing label in column {label_column!r}")
        numbers = pd.to_numeric(text, errors="coerce")
        whole = numbers.notna().all() and (numbers % 1 == 0).all()
        labels = numbers.to_numpy(dtype=np.int64) if whole else text.to_numpy(dtype=str)
    return values, labels, names


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes, y): the C distinct labels sorted, and each label's class index 0..C-1 (int64)."""
    classes, y = np.unique(labels, return_inverse=True)
    return classes, y.astype(np.int64)


def class_indices(path, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each label's index in a model's classes (int64); DataError naming a label the model never saw."""
    labels = labels.astype(classes.dtype) if classes.dtype.kind in "iu" and labels.dtype.kind in "iu" else labels
    known = np.isin(labels, classes)
    if not known.all():
        raise DataError(
            f"{path}: label {labels[~known][0].item()!r} is not one the model was trained on ({_listed(map(str, classes))})"
        )
    return np.searchsorted(classes, labels).astype(np.int64)


def _listed(names, limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
