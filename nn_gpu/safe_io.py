"""Files in and out, safely: inputs checked before they are opened, outputs written atomically.

Inputs (`input_problem`): a data, model or image file must be a regular file. A FIFO or a device
(`--data /dev/zero`) is refused rather than read forever or opened twice; a symlink loop is named.

Outputs: a reader sees the old file or the new one, never half of either. The new content goes to
`.NAME.tmp` beside the file, is flushed to disk, then renamed over it. The temporary name is fixed,
so a writer killed midway (kill -9) leaves at most that one file behind, and the next write to the
same path replaces it. An error names the file the caller asked for, never the temporary one.
"""

from __future__ import annotations

import gzip
import itertools
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def input_problem(path: Path, folder_ok: bool = False) -> str | None:
    """Why `path` cannot be read as an input file, in a few words, or None when it can.

    folder_ok: a folder is acceptable too (a folder of IDX files).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return (error.strerror or str(error)).lower()
    if stat.S_ISDIR(mode):
        return None if folder_ok else "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return "needs a regular file, not a pipe, socket or device"
    return None


def open_text(path: Path, newline: str | None = None) -> IO[str]:
    """The file as text, gunzipped when its name ends in .gz, a UTF-8 byte-order mark dropped; newline as
    open() takes it ("" for the csv module, which reads quoted line breaks itself)."""
    if Path(path).suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=newline)
    return open(path, encoding="utf-8-sig", newline=newline)


def numbered(path: Path) -> Iterator[Path]:
    """path, then path with -2, -3, ... before its suffix (runs/20261128-120000-2, one_28x28-2.png)."""
    yield path
    for n in itertools.count(2):
        yield path.with_name(f"{path.stem}-{n}{path.suffix}")


def write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call write(f) on a temporary file beside `path`, fsync it, then rename it over `path`.

    On any error the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as error:  # name the file the caller asked for, not the temporary one
        raise OSError(error.errno, error.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except OSError as error:  # a full disk or a failed rename: name the caller's file
        tmp.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically."""
    write_atomically(path, lambda f: f.write(text.encode()))
