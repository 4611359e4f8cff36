"""What the tests share: generated digits and CSVs, the notebook's equations by hand, running a command in
this process or a script in a new one, the page's server, CuPy or a skip, and a peak of Python's allocations."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def cupy_or_skip():
    """CuPy (without a GPU, its Python side works), or a skip; CI installs it, so there it must import."""
    try:
        import cupy
    except ImportError:
        if os.environ.get("NN_GPU_REQUIRE_NVRTC") == "1":
            raise
        pytest.skip("CuPy is not installed")
    return cupy


def synthetic_digits(m: int, seed: int = 0, labelled: bool = True):
    """(images m x 784 uint8, labels m uint8): ten random prototypes plus noise, learnable but not trivially."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, size=(10, 784))
    labels = rng.integers(0, 10, size=m)
    noise = rng.integers(-90, 91, size=(m, 784))
    images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
    return images, (labels.astype(np.uint8) if labelled else None)


def hand_iteration(params, X, y):
    """The notebook's forward_prop and backward_prop for any depth, in float64 NumPy: (cache, grads)."""
    L, m = len(params) // 2, X.shape[1]
    cache = {"A0": X}
    for l in range(1, L + 1):
        W, b = params[2 * l - 2], params[2 * l - 1]
        Z = W @ cache[f"A{l - 1}"] + b
        cache[f"Z{l}"] = Z
        if l < L:
            cache[f"A{l}"] = np.maximum(Z, 0)
        else:
            E = np.exp(Z - Z.max(axis=0))
            cache[f"A{l}"] = E / E.sum(axis=0)
    grads, dZ = {}, cache[f"A{L}"] - np.eye(10)[:, y]  # dZ_L = A_L - Y
    for l in range(L, 0, -1):
        grads[f"dZ{l}"] = dZ
        grads[f"dW{l}"] = dZ @ cache[f"A{l - 1}"].T / m
        grads[f"db{l}"] = dZ.sum(axis=1, keepdims=True) / m
        if l > 1:
            dZ = params[2 * l - 2].T @ dZ * (cache[f"Z{l - 1}"] > 0)
    return cache, grads


def write_kaggle_csv(path, images, labels=None) -> None:
    """Kaggle's layout: header `label,pixel0..pixel783` (train) or `pixel0..pixel783` (test)."""
    header = ",".join((["label"] if labels is not None else []) + [f"pixel{i}" for i in range(784)])
    rows = images if labels is None else np.column_stack([labels, images])
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=header, comments="")


def synthetic_csv(path, m: int, seed: int = 0):
    """A Kaggle train.csv of synthetic_digits(m, seed) written at `path`; returns `path`."""
    images, labels = synthetic_digits(m, seed)
    write_kaggle_csv(path, images, labels)
    return path


def train_in_process(data, out, *flags, hidden="16"):
    """train.py's main in this process on the CPU: `data`, a dev set of 100, `hidden`, into `out`, then
    `flags`; its exit code."""
    from nn_gpu.commands.train import train_main

    base = ["--device", "cpu", "--data", str(data), "--dev-size", "100", "--hidden", hidden, "--output-dir", str(out)]
    return train_main([*base, *map(str, flags)])


def run_cli(main, args):
    """(exit code, stdout, stderr) of a command's main (train_main, predict_main) run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def run_script(name, *args, cwd=None):
    """Run scripts/NAME as a user does, in a new Python; the CompletedProcess, output as text."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def start_serve(*args):
    """scripts/serve.py in a new Python, once it listens: (the process, the URL it printed)."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "serve.py"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    found = re.search(r"at (http://\S+) \(Ctrl\+C stops\)$", line)
    if not found:
        process.kill()
        raise AssertionError(f"no URL in {line!r}: {process.communicate()}")
    return process, found.group(1)


def stop_serve(process) -> tuple[int, str]:
    """Ctrl+C to a server start_serve started: (its exit code, its stderr); the pipes closed."""
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    return process.returncode, err


@contextlib.contextmanager
def traced_peak():
    """Trace Python's allocations inside the block; yields a list that then holds the peak, in bytes."""
    peak = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
