"""The folder a training run writes to: owned by one run at a time, checked before any training.

A run claims its folder (`claim`) before it loads data or trains:

- the folder is created if needed, and must be a folder that this user can write to, with room for
  the files the run will write (`check_room`): a full disk is found before training, not after;
- an exclusive lock (`flock` on DIR/.nn_gpu.lock, which holds the owner's PID) is held until the run
  ends, and the file removed; the operating system releases the lock on every exit, kill -9 included
  (which leaves the file, unlocked, for the next run to take). A second run into the same
  folder is refused with the holder's PID. (Where `fcntl` is missing, on Windows, no lock is taken.)
- a folder already holding a run (any of RUN_FILES, or a grid's GRID_FILES) is refused unless the user says `--overwrite`,
  which deletes those files first, or `--resume`, which continues that run in place.

`new_run_folder` makes the default runs/<timestamp> with an exclusive mkdir, adding -2, -3, ... when
another run took the name in the same second, so default names never collide.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import shutil
from pathlib import Path

from nn_gpu.errors import NNGpuError
from nn_gpu.safe_io import numbered

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK = ".nn_gpu.lock"
CHECKPOINT = "checkpoint.npz"
BEST_MODEL = "best_model.npz"
RUN_FILES = (
    "best_model.npz", "model.npz", "metrics.json", "metrics.jsonl", "checkpoint.npz", "confusion_matrix.json",
    "confusion_matrix.png", "training_curves.png", "weights.png", "predictions.png", "augmentations.png",
    "tensorboard",
)  # fmt: skip
GRID_FILES = ("networks", "results.csv", "results.png")  # a grid's (train.py --seeds), beside best_model.npz


class RunFolder:
    """A claimed output folder: `path`, and the open lock file that keeps it ours until `release()`.
    Used as a context, a folder the claim created is removed again if the run fails leaving it empty."""

    def __init__(self, path: Path, lock_fd: int, created: bool = False):
        self.path, self._lock_fd, self.created = path, lock_fd, created

    def release(self) -> None:
        """Remove the lock file and close it, which releases the lock (idempotent)."""
        if self._lock_fd is not None:
            (self.path / LOCK).unlink(missing_ok=True)  # while still locked: see _lock
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, failed, *exc) -> None:
        self.release()
        if failed is not None and self.created:
            with contextlib.suppress(OSError):  # not empty: it holds what the run wrote, which stays
                self.path.rmdir()


def new_run_folder(parent: Path = Path("runs")) -> Path:
    """Create and return parent/<YYYYmmdd-HHMMSS>, or -2, -3, ... after it when that name is taken."""
    for folder in numbered(parent / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")):
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            pass
        except OSError as error:
            raise NNGpuError(f"{folder}: cannot create the run folder ({error.strerror or error})") from None


def claim(folder: Path, overwrite: bool = False, resume: bool = False, created: bool = False) -> RunFolder:
    """Make `folder` this run's own (see the module docstring), or NNGpuError saying why not; created:
    the caller has just made it (new_run_folder), so that a failed run leaves no empty folder behind."""
    folder = Path(folder)
    created = created or not folder.exists()
    if folder.exists() and not folder.is_dir():
        raise NNGpuError(f"{folder}: is a file, not a folder; choose another --output-dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NNGpuError(
            f"{folder}: cannot create it ({error.strerror or error}); choose another --output-dir"
        ) from None
    run = RunFolder(folder, _lock(folder), created)
    try:
        found = [name for name in (*RUN_FILES, *GRID_FILES) if (folder / name).exists()]
        if found and not resume:
            if not overwrite:
                raise NNGpuError(
                    f"{folder}: holds a run already ({', '.join(found)}); add --overwrite to replace it, "
                    f"--resume {folder} to continue it, or choose another --output-dir"
                )
            for name in found:
                if (folder / name).is_dir() and not (folder / name).is_symlink():
                    shutil.rmtree(folder / name)  # tensorboard/
                else:
                    (folder / name).unlink()
    except BaseException:
        run.release()
        raise
    return run


def _lock(folder: Path) -> int:
    """The open lock file of `folder`, locked by us with our PID in it; NNGpuError naming the holder.

    The file is removed when the lock is released, so after taking the lock we check that the file we
    locked is still the one at the path (not one its last holder removed meanwhile), and retry if not.
    """
    path = folder / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise NNGpuError(
                f"{folder}: cannot write there ({error.strerror or error}); choose another --output-dir"
            ) from None
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise NNGpuError(
                f"{folder}: in use by another training run (PID {holder}); wait for it or choose another --output-dir"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


def check_room(folder: Path, needed_bytes: int) -> None:
    """NNGpuError when the disk holding `folder` has less than needed_bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise NNGpuError(
            f"{folder}: {os.strerror(errno.ENOSPC).lower()}: {free / 1e6:.1f} MB free, "
            f"the run needs about {needed_bytes / 1e6:.1f} MB; free some space or choose another --output-dir"
        )
