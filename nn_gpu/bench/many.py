"""Many networks at once against one after another, in one run: `bench.py --many`.

seeds     8 seeds of 784-128-10 (on a card 64), mini-batches of 128 on the built-in sample's 4,000
          training digits: nn_gpu.many.train_many against nn_gpu.training.train run once per seed
          (each on the same batches), as samples trained per second, all networks counted; on the
          CPU again with another process spinning on one core
search    a 16-setting grid (learning_rate_init x alpha, 4 x 4) of 784-128-10 MLPClassifiers, 3
          folds, 5 epochs: nn_gpu.MLPGridSearchCV on the device against scikit-learn's
          GridSearchCV over sklearn's MLPClassifier with n_jobs=-1 (every core), best score beside
          each (needs scikit-learn)
"""

from __future__ import annotations

import importlib.util
import time
import warnings

import numpy as np

from nn_gpu import many, training
from nn_gpu.bench.timing import busy_core
from nn_gpu.data import load_dataset
from nn_gpu.device import resolve_device
from nn_gpu.model import Network
from nn_gpu.optim import make_optimizer

HIDDEN, BATCH = (128,), 128
NETWORKS = {"cpu": 8, "gpu": 64}
GRID = {"learning_rate_init": [3e-4, 1e-3, 3e-3, 1e-2], "alpha": [1e-5, 1e-4, 1e-3, 1e-2]}


def many_benchmark(devices: list[str], quick: bool) -> list[dict]:
    """The rows of `bench.py --many` on each device (see the module docstring)."""
    train, _ = load_dataset("sample").split(1000, seed=0)
    iterations = 60 if quick else 300
    rows = []
    for name in devices:
        rows.append(seeds_row(name, train.X, train.y, NETWORKS[name], iterations))
        if name == "cpu":
            with busy_core():
                rows.append({**seeds_row(name, train.X, train.y, NETWORKS[name], iterations), "under_load": True})
    if importlib.util.find_spec("sklearn") is not None:
        rows += [search_row(name, train, 2 if quick else 5) for name in devices]
    return rows


def seeds_row(device_name: str, X, y, count: int, iterations: int) -> dict:
    """K networks trained together against the same K trained alone one after another: seconds and samples/s."""
    device = resolve_device(device_name)
    X_device = X if device.name == "cpu" else Network.create(HIDDEN, device).inputs(X)
    y_device = device.to_device(y.astype(np.int64 if device.name == "cpu" else np.int32))
    plan = training.TrainingPlan(iterations=iterations, batch_size=BATCH, log_interval=0)
    many.train_many(X, y, seeds=range(count), hidden=HIDDEN, device=device, iterations=5, batch_size=BATCH, log=None)
    started = time.perf_counter()
    many.train_many(
        X, y, seeds=range(count), hidden=HIDDEN, device=device, iterations=iterations, batch_size=BATCH,
        log_interval=0, log=None,
    )  # fmt: skip
    together = time.perf_counter() - started
    started = time.perf_counter()
    for seed in range(count):
        net = Network.create(HIDDEN, device, seed)
        training.train(net, make_optimizer("sgd", net), X_device, y_device, None, plan, evaluate_at_end=False)
    device.synchronize()
    alone = time.perf_counter() - started
    samples = count * iterations * BATCH
    return {
        "workload": f"{count} seeds", "device": device_name, "networks": count, "iterations": iterations,
        "seconds_together": together, "seconds_alone": alone, "samples_per_second_together": samples / together,
        "samples_per_second_alone": samples / alone, "speedup": alone / together,
    }  # fmt: skip


def search_row(device_name: str, train, epochs: int) -> dict:
    """nn_gpu.MLPGridSearchCV against scikit-learn's GridSearchCV (n_jobs=-1) on the same 16-setting grid."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    from nn_gpu.estimator import MLPClassifier
    from nn_gpu.search import MLPGridSearchCV

    X, y = (train.rows / 255).astype(np.float32), train.labels
    ours = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=epochs, n_iter_no_change=epochs, random_state=0,
                         device=device_name)  # fmt: skip
    started = time.perf_counter()
    search = MLPGridSearchCV(ours, GRID, cv=3).fit(X, y)
    ours_seconds = time.perf_counter() - started
    theirs = SklearnMLP(hidden_layer_sizes=HIDDEN, max_iter=epochs, n_iter_no_change=epochs, random_state=0)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning after max_iter epochs: expected here
        reference = GridSearchCV(theirs, GRID, cv=3, n_jobs=-1).fit(X, y)
    sklearn_seconds = time.perf_counter() - started
    return {
        "workload": "16-setting grid search", "device": device_name, "epochs": epochs,
        "seconds_nn_gpu": ours_seconds, "seconds_sklearn": sklearn_seconds, "speedup": sklearn_seconds / ours_seconds,
        "best_score_nn_gpu": search.best_score_, "best_score_sklearn": reference.best_score_,
    }  # fmt: skip


def many_lines(rows: list[dict]) -> list[str]:
    """One line per row, as bench.py prints them."""
    lines = []
    for r in rows:
        if r["workload"].endswith("seeds"):
            load = " under load" if r.get("under_load") else ""
            lines.append(
                f"{r['workload']} of 784-128-10 at batch {BATCH}, {r['device']}{load}: together {r['seconds_together']:.2f} s "
                f"({r['samples_per_second_together']:,.0f} samples/s), one after another {r['seconds_alone']:.2f} s "
                f"({r['samples_per_second_alone']:,.0f} samples/s): {r['speedup']:.2f}x"
            )
        else:
            lines.append(
                f"{r['workload']}, {r['epochs']} epochs, 3 folds, {r['device']}: nn_gpu {r['seconds_nn_gpu']:.1f} s "
                f"(best {r['best_score_nn_gpu']:.4f}), scikit-learn n_jobs=-1 {r['seconds_sklearn']:.1f} s "
                f"(best {r['best_score_sklearn']:.4f}): {r['speedup']:.2f}x"
            )
    return lines
