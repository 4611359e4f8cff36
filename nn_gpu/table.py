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

import contextlib
import csv
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nn_gpu.errors import DataError, one_line
from nn_gpu.safe_io import open_text

SCALES = ("standard", "minmax", "none")
DIGITS = np.arange(10)  # the classes of a digit dataset


@dataclass(frozen=True)
class Scaling:
    """X' = (X - shift) / divisor per feature: kind (one of SCALES), shift and divisor (n0 float64 each)."""

    kind: str
    shift: np.ndarray
    divisor: np.ndarray

    @classmethod
    def fit(cls, kind: str, features: np.ndarray, names: tuple[str, ...] | None = None) -> Scaling:
        """The scaling of `kind` fitted on features (m x n0, the training rows). Each column is summed
        over a power of two near its largest magnitude, which scales it exactly, so a mean or standard
        deviation that fits in float64 is found even where its squares or sums would overflow; a column
        whose spread float64 cannot hold is refused (DataError naming it, as in `names`)."""
        features = np.asarray(features, dtype=np.float64)
        if kind not in SCALES:
            raise ValueError(f"unknown scale {kind!r}: choose one of {', '.join(SCALES)}")
        n0 = features.shape[1]
        if kind == "none":
            return cls(kind, np.zeros(n0), np.ones(n0))
        largest = np.abs(features).max(axis=0, initial=0.0)
        unit = np.ldexp(1.0, np.frexp(largest)[1] - 1)  # a power of two above |x| / 2: dividing by it is exact
        exact = features / unit
        with np.errstate(over="ignore", invalid="ignore"):
            if kind == "standard":
                shift, spread = exact.mean(axis=0) * unit, exact.std(axis=0) * unit
            else:
                shift, spread = features.min(axis=0), np.ptp(exact, axis=0) * unit
            span = np.maximum(features.max(axis=0) - shift, shift - features.min(axis=0))  # |x - shift| at most
            huge = ~np.isfinite(spread) | ~np.isfinite(span)
        if huge.any():
            column = int(np.flatnonzero(huge)[0])
            name = names[column] if names else f"column {column + 1}"
            raise DataError(
                f"feature {name!r}: its values span more than float64 can hold (up to "
                f"{largest[column]:.3g}), so it cannot be scaled; rescale that column"
            )
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
    absent (then None) and the features are taken in that order. Every row must have as many fields as
    the header; blank lines are skipped. Labels stay as written (text) unless every one is an integer
    written plainly (`7`, `-3`; not `07`, `7.0` or one beyond int64), when they are int64: a reading
    that would change a label never happens. DataError with one line naming the file, and the line and
    column where it applies, for a row of another width, a missing or repeated column, an empty,
    non-numeric or non-finite feature, a missing label, or labels that are continuous numbers.
    """
    header, rows, lines = _read_rows(path)
    columns = [cell.strip() for cell in header]
    repeated = next((c for i, c in enumerate(columns) if c in columns[:i]), None)
    if repeated is not None:
        raise DataError(f"{path}: line 1: column {repeated!r} appears twice (columns: {_listed(columns)})")
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
    if not rows:
        raise DataError(f"{path}: no rows, only a header")
    cells = np.array(rows, dtype=str).reshape(len(rows), len(columns))
    where = [columns.index(name) for name in names]
    values = _numbers(cells[:, where])
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        cell = cells[row, where[column]].strip()
        place = f"{path}: line {lines[row]}, column {where[column] + 1} ({names[column]})"
        raise DataError(f"{place}: {'missing value' if not cell else repr(cell) + ' is not a finite number'}")
    labels = None
    if label_column in columns:
        labels = _labels(path, np.char.strip(cells[:, columns.index(label_column)]), label_column, lines)
    return values, labels, names


MAX_TABLE_LINE = 1 << 20  # characters in one line of a table: a file that is not a CSV is refused, not read forever
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,18})")  # an integer as written plainly; int64 checked too


def _read_rows(path) -> tuple[list[str], list[list[str]], list[int]]:
    """(header cells, data rows, each row's line number): every row as wide as the header, blank lines
    skipped; DataError for a row of another width, a line over MAX_TABLE_LINE, or a file that is not text."""
    path = Path(path)
    try:
        with open_text(path, newline="") as f:
            reader = csv.reader(_bounded_lines(path, f), skipinitialspace=True)
            header = next(reader, None)
            while header == []:
                header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: file is empty")
            rows, lines = [], []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    hint = " (a trailing comma?)" if len(row) == len(header) + 1 and not row[-1].strip() else ""
                    raise DataError(
                        f"{path}: line {reader.line_num}: {len(row)} fields, expected {len(header)} as in the header{hint}"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except (csv.Error, OSError, UnicodeDecodeError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read as a CSV table ({one_line(error)})") from None
    return header, rows, lines


def _bounded_lines(path, f):
    """The lines of text file f, DataError at one over MAX_TABLE_LINE characters."""
    for number, line in enumerate(iter(lambda: f.readline(MAX_TABLE_LINE + 1), ""), start=1):
        if len(line) > MAX_TABLE_LINE:
            raise DataError(f"{path}: line {number} is over {MAX_TABLE_LINE:,} characters long: not a CSV table")
        yield line


def _numbers(cells: np.ndarray) -> np.ndarray:
    """float64 values of text cells (m x n), NaN where a cell is not a number."""
    import pandas as pd  # imported when a table is read, not by `import nn_gpu`

    flat = pd.to_numeric(pd.Series(cells.ravel()), errors="coerce").to_numpy(dtype=np.float64)
    return flat.reshape(cells.shape)


def _labels(path, text: np.ndarray, label_column: str, lines: list[int]) -> np.ndarray:
    """A label column's cells (stripped) as int64 when every one is an integer written plainly, else as
    written; DataError for an empty label or a column of numbers that are not all whole (continuous)."""
    empty = np.flatnonzero(text == "")
    if len(empty):
        raise DataError(f"{path}: line {lines[empty[0]]}: missing label in column {label_column!r}")
    if all(_INTEGER.fullmatch(label) for label in text):
        with contextlib.suppress(OverflowError):
            return np.array([int(label) for label in text], dtype=np.int64)
    numbers = _numbers(text)
    if np.isfinite(numbers).all() and (numbers % 1 != 0).any():
        row = int(np.flatnonzero(numbers % 1 != 0)[0])
        raise DataError(
            f"{path}: line {lines[row]}: label {str(text[row])!r} in column {label_column!r} is not a whole number: "
            f"a continuous target ({len(np.unique(text)):,} distinct values in {len(text):,} rows), not classes"
        )
    return text.astype(str)


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes, y): the C distinct labels sorted, and each label's class index 0..C-1 (int64)."""
    classes, y = np.unique(labels, return_inverse=True)
    return classes, y.astype(np.int64)


def class_indices(path, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each label's index in a model's classes (int64), compared as the model stores them (text classes
    against the labels as written); DataError naming a label the model never saw."""
    if classes.dtype.kind in "iu" and labels.dtype.kind in "iu":
        labels = labels.astype(classes.dtype)
    elif classes.dtype.kind == "U":  # text classes: labels as written (read_table reads `7` as 7, written 7)
        labels = labels.astype(str)
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
