"""MNIST and Fashion-MNIST by name: downloaded once, checked, cached, then used offline.

`fetch("mnist")` returns a directory holding the four standard IDX files. Each file comes from the
first mirror that serves it (the mirrors torchvision uses), is checked against the md5 that
torchvision publishes, and is written atomically into the cache (`NN_GPU_DATA`, default
~/.cache/nn_gpu): a failed or cut-off transfer leaves nothing behind. Files already in the cache
with the right checksum are used without any network access. `NN_GPU_MIRRORS` (comma-separated
base URLs) replaces the built-in mirrors, e.g. for a local copy.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nn_gpu.errors import DataError, one_line
from nn_gpu.safe_io import write_atomically

_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Remote:
    """Where a dataset's files can be downloaded from, and their md5 checksums."""

    mirrors: tuple[str, ...]
    md5: dict[str, str]


REMOTES = {
    "mnist": Remote(
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": Remote(
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}


def cache_root() -> Path:
    """NN_GPU_DATA, or ~/.cache/nn_gpu."""
    return Path(os.environ.get("NN_GPU_DATA") or Path.home() / ".cache" / "nn_gpu")


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, cache: Path | None = None, remote: Remote | None = None) -> Path:
    """The cache directory of dataset `name`, downloading whatever is missing or damaged."""
    remote = remote or REMOTES[name]
    mirrors = tuple(m.strip() for m in os.environ.get("NN_GPU_MIRRORS", "").split(",") if m.strip()) or remote.mirrors
    folder = (cache or cache_root()) / name
    for filename, md5 in remote.md5.items():
        target = folder / filename
        if target.is_file() and md5_of(target) == md5:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        _download(name, filename, md5, mirrors, target)
    return folder


def _download(name: str, filename: str, md5: str, mirrors: tuple[str, ...], target: Path) -> None:
    """Write the first mirror's copy whose md5 matches into `target`, or raise DataError with every reason."""
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        digest = hashlib.md5(usedforsecurity=False)

        def copy(f, url=url, digest=digest):
            with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response:
                received = 0
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    f.write(block)
                    received += len(block)
                if response.length:  # the server promised more bytes than it sent
                    raise _TransferCut(f"transfer cut off after {received} of {received + response.length} bytes")
            if digest.hexdigest() != md5:
                raise _ChecksumMismatch(f"md5 {digest.hexdigest()}, expected {md5}")

        print(f"downloading {url}")
        try:
            write_atomically(target, copy)
            return
        except _ChecksumMismatch as error:
            failures.append(f"{url}: checksum mismatch: {error}")
        except _TransferCut as error:
            failures.append(f"{url}: {error}")
        except (OSError, http.client.HTTPException, ValueError) as error:
            failures.append(f"{url}: {_reason(error)}")
    raise DataError(
        f"{name}: could not download {filename} into {target.parent} ({'; '.join(failures)}); "
        "connect to the internet once, or put the four IDX files there yourself"
    )


class _ChecksumMismatch(Exception):
    pass


class _TransferCut(Exception):
    pass


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason if isinstance(error.reason, Exception) else error
    return one_line(error) or type(error).__name__
