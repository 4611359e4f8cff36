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

from nn_gpu.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip; DataError when unreadable or corrupt."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt gzip ({' '.join(str(error).split())})") from None


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


def parse(path: Path, data: bytes, magic: int) -> np.ndarray:
    """The uint8 array in an IDX file whose magic number must be `magic`."""
    ndim = magic - 2048
    what = "images" if magic == IMAGES_MAGIC else "labels"
    if len(data) < 4:
        raise DataError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: magic number {found}, expected {magic} for IDX {what}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated: {len(data)} bytes, the header alone needs {header}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if magic == IMAGES_MAGIC and shape[1:] != (28, 28):
        raise DataError(f"{path}: images are {shape[1]}x{shape[2]}, expected 28x28")
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) < expected:
        raise DataError(f"{path}: truncated: {len(data)} bytes, expected {expected} for {shape[0]} {what}")
    if len(data) > expected:
        raise DataError(f"{path}: {len(data) - expected} trailing bytes after {shape[0]} {what}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape[0], -1)


def read_images(path: Path) -> np.ndarray:
    """count x 784 uint8 images from an IDX images file."""
    return parse(path, read_bytes(path), IMAGES_MAGIC)


def read_labels(path: Path) -> np.ndarray:
    """count uint8 labels 0..9 from an IDX labels file."""
    labels = parse(path, read_bytes(path), LABELS_MAGIC)[:, 0]
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
