"""nn_gpu.MLPClassifier beside scikit-learn's MLPClassifier and PyTorch, in one run: `bench.py --estimators`.

Each fits the same data (pixels / 255 as float32, n x 784 rows), the same network (one hidden layer of
100 ReLU units, sklearn's default, and a softmax), for the same epochs (no early stop on either side:
n_iter_no_change = max_iter), in batches of 200 (sklearn's "auto"), with the same solver settings:

    sgd    learning_rate_init 0.01, momentum 0.9 (sklearn: nesterovs_momentum=False), alpha 1e-4
    adam   learning_rate_init 0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-8, alpha 1e-4

PyTorch runs the same recipe as its users write it (nn.Linear, nn.ReLU, CrossEntropyLoss,
torch.optim with weight_decay = alpha / batch, one randperm an epoch); on a card also with each step
captured in a CUDA graph (torch-gpu-graph: nn_gpu.bench.torch_step), as a speed-minded user would. Data: the built-in MNIST sample
(4,000 train and 1,000 test, a seeded split) and Fashion-MNIST (60,000 train, the 10,000 of t10k).
Fit time is the wall-clock seconds of fit (of the loop, for PyTorch); accuracy is on the test rows.
On the CPU each fit runs again with another process spinning on one core (under load).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import time
import warnings

import numpy as np

from nn_gpu.bench.timing import busy_core
from nn_gpu.data import load_dataset
from nn_gpu.estimator import MLPClassifier

HIDDEN = (100,)
BATCH = 200
ALPHA = 1e-4
SOLVERS = {"sgd": {"learning_rate_init": 0.01, "momentum": 0.9}, "adam": {"learning_rate_init": 0.001}}


def split(source: str, seed: int = 0):
    """(X_train, y_train, X_test, y_test): float32 pixels / 255 in rows; the test set is t10k when the
    source has one, else 1,000 rows held out after a seeded shuffle."""
    dataset = load_dataset(source)
    if dataset.test is not None:
        train, test = dataset, dataset.test
    else:
        train, test = dataset.split(1000, seed)
    rows = lambda d: np.asarray(d.rows, dtype=np.float32) / np.float32(255)  # noqa: E731
    return rows(train), train.labels.astype(np.int64), rows(test), test.labels.astype(np.int64)


def fit_nn_gpu(data, solver: str, epochs: int, seed: int, device: str) -> dict:
    X, y, X_test, y_test = data
    clf = MLPClassifier(
        HIDDEN, solver, ALPHA, BATCH, max_iter=epochs, n_iter_no_change=epochs, random_state=seed, device=device,
        **SOLVERS[solver],
    )  # fmt: skip
    started = time.perf_counter()
    clf.fit(X, y)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "accuracy": clf.score(X_test, y_test), "epochs": clf.n_iter_}


def fit_sklearn(data, solver: str, epochs: int, seed: int) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    X, y, X_test, y_test = data
    clf = SklearnMLP(
        HIDDEN, solver=solver, alpha=ALPHA, batch_size=BATCH, max_iter=epochs, n_iter_no_change=epochs,
        random_state=seed, nesterovs_momentum=False, **SOLVERS[solver],
    )  # fmt: skip
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # it ran the epochs asked for, as intended
        clf.fit(X, y)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "accuracy": clf.score(X_test, y_test), "epochs": clf.n_iter_}


def fit_torch(data, solver: str, epochs: int, seed: int, device: str, graphed: bool = False) -> dict:
    import torch

    from nn_gpu.bench.torch_step import TorchStep, optimizer

    on = torch.device("cuda" if device == "gpu" else "cpu")
    X, y, X_test, y_test = (torch.from_numpy(np.ascontiguousarray(a)).to(on) for a in data)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], HIDDEN[0]), torch.nn.ReLU(), torch.nn.Linear(HIDDEN[0], int(y.max()) + 1)
    ).to(on)
    settings = SOLVERS[solver]
    step = TorchStep(torch, model, torch.nn.CrossEntropyLoss(), optimizer(
        torch, solver, model.parameters(), settings["learning_rate_init"], settings.get("momentum", 0.0),
        ALPHA / BATCH, graphed), graphed)  # fmt: skip
    if on.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(y), device=on)
        for start in range(0, len(y), BATCH):
            rows = order[start : start + BATCH]
            step(X[rows], y[rows])
    if on.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        accuracy = float((model(X_test).argmax(dim=1) == y_test).float().mean())
    return {"seconds": seconds, "accuracy": accuracy, "epochs": epochs}


def estimator_benchmark(sources, devices, epochs: int, seeds, with_torch: bool, under_load: bool) -> list[dict]:
    """One row per (data, solver, implementation, load): the mean test accuracy and fit seconds over
    seeds, with each seed's figures. Printed as it goes."""
    with_torch = with_torch and importlib.util.find_spec("torch") is not None
    rows = []
    for source in sources:
        data = split(source)
        for solver in SOLVERS:
            fits = [("sklearn", fit_sklearn, "cpu")]
            for device in devices:
                fits += [("nn_gpu", fit_nn_gpu, device)] + ([("torch", fit_torch, device)] if with_torch else [])
                if with_torch and device == "gpu":
                    fits.append(("torch", functools.partial(fit_torch, graphed=True), "gpu-graph"))
            for loaded in (False, True) if under_load else (False,):
                for name, fit, device in fits:
                    if loaded and device != "cpu":
                        continue
                    on = () if name == "sklearn" else (device.removesuffix("-graph"),)
                    with busy_core() if loaded else contextlib.nullcontext():
                        results = [fit(data, solver, epochs, seed, *on) for seed in seeds]
                    row = {
                        "data": source, "solver": solver, "impl": f"{name}-{device}", "under_load": loaded,
                        "train_size": len(data[1]), "epochs": epochs,
                        "accuracy": float(np.mean([r["accuracy"] for r in results])),
                        "seconds": float(np.mean([r["seconds"] for r in results])),
                        "per_seed": results,
                    }  # fmt: skip
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    load = " (one core busy)" if row["under_load"] else ""
    return (
        f"{row['data']:<34} {row['solver']:<5} {row['impl']:<12} accuracy {100 * row['accuracy']:6.2f}%  "
        f"fit {row['seconds']:8.2f} s{load}"
    )


def speedups(rows: list[dict]) -> list[str]:
    """For each (data, solver, load): sklearn's fit time over each other implementation's, and the accuracy gap."""
    lines = []
    for row in rows:
        if row["impl"] == "sklearn-cpu":
            continue
        base = next(
            (
                r
                for r in rows
                if r["impl"] == "sklearn-cpu" and all(r[k] == row[k] for k in ("data", "solver", "under_load"))
            ),
            None,
        )
        if base is not None:
            lines.append(
                f"{row['data']} {row['solver']}{' (loaded)' if row['under_load'] else ''}: {row['impl']} "
                f"{base['seconds'] / row['seconds']:.1f}x less fit time than sklearn, accuracy "
                f"{100 * (row['accuracy'] - base['accuracy']):+.2f} points"
            )
    return lines
