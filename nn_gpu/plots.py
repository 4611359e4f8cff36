"""Pictures of what the network learned, drawn headless with matplotlib (the optional extra `plot`).

    training_curves.png    loss and accuracy against iteration, train and dev
    confusion_matrix.png   dev-set counts, true label by predicted label, with per-class accuracy
    predictions.png        a grid of digits with their predicted and true labels, mistakes in red
    weights.png            each first-layer unit's 784 weights as a 28 x 28 image: what it looks for
                           (the first WEIGHT_UNITS units of a wider layer, as its title says)

matplotlib is imported only here and only when drawing; without it `load_pyplot` returns None and
the caller says once that pictures were skipped. Every file is written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from nn_gpu.safe_io import write_atomically

PLOT_HINT = "pip install -e '.[plot]'"
WEIGHT_UNITS = 64  # units drawn in weights.png: one subplot each, about 2 s for 64 (80 s for 2048)


def load_pyplot():
    """matplotlib.pyplot on the headless Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_counts(labels: np.ndarray, predictions: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """counts[true, predicted]: an n_classes x n_classes int64 matrix summing to len(labels)."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return counts


def confusion_summary(counts: np.ndarray) -> dict:
    """The JSON form of a confusion matrix: counts, per-class accuracy (recall) and overall accuracy."""
    per_class = counts.diagonal() / np.maximum(counts.sum(axis=1), 1)
    return {
        "rows": "true label",
        "columns": "predicted label",
        "counts": counts.tolist(),
        "total": int(counts.sum()),
        "accuracy": float(counts.trace() / max(counts.sum(), 1)),
        "per_class_accuracy": per_class.tolist(),
    }


def _save(plt, fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomically(path, lambda f: f.write(buffer.getvalue()))


def training_curves(plt, history: list[dict], path: Path) -> None:
    iterations = [h["iteration"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(iterations, [h["train_loss"] for h in history], label="train")
    acc_ax.plot(iterations, [100 * h["train_accuracy"] for h in history], label="train")
    dev = [h for h in history if h.get("dev_accuracy") is not None]
    if dev:
        loss_ax.plot([h["iteration"] for h in dev], [h["dev_loss"] for h in dev], label="dev")
        acc_ax.plot([h["iteration"] for h in dev], [100 * h["dev_accuracy"] for h in dev], label="dev")
    loss_ax.set(xlabel="iteration", ylabel="cross-entropy loss", title="Loss")
    acc_ax.set(xlabel="iteration", ylabel="accuracy (%)", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(plt, fig, path)


def confusion_matrix(plt, counts: np.ndarray, path: Path) -> None:
    summary = confusion_summary(counts)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    for (true, predicted), count in np.ndenumerate(counts):
        color = "white" if count > counts.max() / 2 else "black"
        ax.text(predicted, true, str(count), ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10), [f"{k} ({100 * a:.0f}%)" for k, a in enumerate(summary["per_class_accuracy"])])
    ax.set(xlabel="predicted label", ylabel="true label (per-class accuracy)")
    ax.set_title(f"Dev set: {summary['total']} images, accuracy {100 * summary['accuracy']:.2f}%")
    fig.tight_layout()
    _save(plt, fig, path)


def predictions_grid(plt, images: np.ndarray, predictions, probabilities, labels, path: Path) -> None:
    """Up to len(images) digits with 'predicted (probability)' and the true label; mistakes in red."""
    n = len(images)
    columns = min(n, 8)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(images[k].reshape(28, 28), cmap="gray", vmin=0, vmax=255)
        title = f"{predictions[k]} ({100 * probabilities[k]:.0f}%)"
        wrong = labels is not None and labels[k] != predictions[k]
        if labels is not None:
            title += f"\ntrue {labels[k]}"
        ax.set_title(title, fontsize=8, color="red" if wrong else "black")
    fig.tight_layout()
    _save(plt, fig, path)


def weights(plt, W1: np.ndarray, path: Path, hidden: int | None = None) -> None:
    """Each row of W1 (units x 784) as a 28 x 28 image, red positive and blue negative, one scale per
    unit; `hidden`, when larger than the units given, is the layer's width, named in the title."""
    units = W1.shape[0]
    columns = min(units, 16)
    rows = math.ceil(units / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.2 * rows + 0.5), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < units:
            limit = np.abs(W1[k]).max() or 1.0
            ax.imshow(W1[k].reshape(28, 28), cmap="bwr", vmin=-limit, vmax=limit)
            ax.set_title(str(k + 1), fontsize=7)
    shown = f" (units 1-{units} of {hidden})" if hidden and hidden > units else ""
    fig.suptitle(f"First-layer weights: what each hidden unit looks for{shown}")
    fig.tight_layout()
    _save(plt, fig, path)
