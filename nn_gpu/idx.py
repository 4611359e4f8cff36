"""The IDX files of MNIST and Fashion-MNIST (raw or gzipped), read and checked.

Format (big-endian): two zero bytes, a type byte (0x08: unsigned byte), the number of dimensions,
then one uint32 per dimension, then the data. Images: magic 2051 (0x00000803), dimensions
count x 28 x 28. Labels: magic 2049 (0x00000801), dimension count, values 0..9.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from nn_gpu.errors import DataError, one_line

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"


def is_idx(path: Path) -> bool:
    """Whether the file starts like an IDX file of unsigned bytes (after gunzip)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == _GZIP_MAGIC:
            with gzip.open(path, "rb") as f:
                head = f.read(4)
        else:
            with open(path, "rb") as f:
                head = f.read(4)
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) == 4 and head[:3] == b"\x00\x00\x08"


_TRAILING_SHOWN = 1 << 20  # bytes after the data that are counted before saying "over"


def read(path: Path, magic: int) -> np.ndarray:
    """The uint8 array (count x the rest, flattened) in an IDX file whose magic number must be `magic`.

    The file is streamed, raw or gunzipped, and never read past what its header declares (plus a
    bounded look for trailing bytes), so a gzip bomb or a false count cannot fill the memory.
    """
    ndim = magic - 2048
    what = "images" if magic == IMAGES_MAGIC else "labels"
    header = 4 + 4 * ndim
    gzipped = _is_gzip(path)
    try:
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as f:
            head = _read_up_to(f, header)
            if len(head) < 4:
                raise DataError(f"{path}: truncated: {len(head)} bytes, too short for an IDX header")
            found = int.from_bytes(head[:4], "big")
            if found != magic:
                raise DataError(f"{path}: magic number {found}, expected {magic} for IDX {what}")
            if len(head) < header:
                raise DataError(f"{path}: truncated: {len(head)} bytes, the header alone needs {header}")
            shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
            if magic == IMAGES_MAGIC and shape[1:] != (28, 28):
                raise DataError(f"{path}: images are {shape[1]}x{shape[2]}, expected 28x28")
            if shape[0] == 0:
                raise DataError(f"{path}: holds no {what} (its header says 0)")
            size = int(np.prod(shape, dtype=np.int64))
            body = _read_up_to(f, size)
            if len(body) < size:
                raise DataError(
                    f"{path}: truncated: {header + len(body)} bytes, expected {header + size} for {shape[0]} {what}"
                )
            rest = len(f.read(_TRAILING_SHOWN))
            if rest:
                count = f"over {_TRAILING_SHOWN:,}" if rest == _TRAILING_SHOWN and f.read(1) else str(rest)
                raise DataError(f"{path}: {count} trailing bytes after {shape[0]} {what}")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as error:
        problem = "corrupt gzip" if gzipped else "cannot read"
        raise DataError(f"{path}: {problem} ({one_line(error)})") from None
    return np.frombuffer(body, dtype=np.uint8).reshape(shape[0], -1)


def _is_gzip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == _GZIP_MAGIC
    except OSError:
        return False  # open() again says why


def _read_up_to(f, size: int) -> bytearray:
    """Up to `size` bytes of f, fewer only at its end; read in pieces, so a false size allocates nothing."""
    data = bytearray()
    while len(data) < size:
        piece = f.read(min(size - len(data), 1 << 24))
        if not piece:
            break
        data += piece
    return data


def read_images(path: Path) -> np.ndarray:
    """count x 784 uint8 images from an IDX images file."""
    return read(path, IMAGES_MAGIC)


def read_labels(path: Path) -> np.ndarray:
    """count uint8 labels 0..9 from an IDX labels file."""
    labels = read(path, LABELS_MAGIC)[:, 0]
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(f"{path}: label {labels[bad[0]]} at index {bad[0]} outside 0..9")
    return labels


def encode(array: np.ndarray, magic: int) -> bytes:
    """The IDX bytes of uint8 labels (m,) or images (m x 784, written as m x 28 x 28)."""
    shape = array.shape if magic == LABELS_MAGIC else (array.shape[0], 28, 28)
    return magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape) + array.astype(np.uint8).tobytes()


def write(path: Path, array: np.ndarray, magic: int) -> None:
    """Write a uint8 array as IDX (gzipped when the name ends in .gz): for tests and tools."""
    data = encode(array, magic)
    Path(path).write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)


def standard_file(folder: Path, stem: str) -> Path | None:
    """folder/stem or folder/stem.gz, whichever exists."""
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


def labels_beside(images: Path) -> Path | None:
    """The labels file named like `images` (images-idx3 -> labels-idx1), raw or .gz, if it exists."""
    stem = images.name.removesuffix(".gz")
    if "images-idx3" not in stem:
        return None
    return standard_file(images.parent, stem.replace("images-idx3", "labels-idx1"))
