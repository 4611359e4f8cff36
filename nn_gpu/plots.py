"""Pictures of what the network learned, as matplotlib Figures (the optional extra `plot`).

    training_curves(history)         loss and accuracy against iteration, train and dev
    confusion_matrix(counts)         dev-set counts, true label by predicted label, with per-class accuracy
    predictions_grid(images, ...)    a grid of digits with their labels, or predicted and true labels
                                     (mistakes in red)
    weights(W1)                      each first-layer unit's 784 weights as a 28 x 28 image: what it
                                     looks for (the first WEIGHT_UNITS units of a wider layer, as its
                                     title says)

Each returns a Figure built without pyplot, so matplotlib's backend is never chosen or changed (a
notebook keeps its own), nothing is left open, and drawing works on any thread and headless. In
Jupyter a returned Figure shows as a picture; anywhere, `fig.savefig("name.png")` writes it, and
`save(fig, path)` writes it atomically, as train.py and predict.py do. matplotlib is imported only
when drawing; `available()` says whether it is installed.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import numpy as np

from nn_gpu.safe_io import write_atomically

PLOT_HINT = "pip install -e '.[plot]'"
WEIGHT_UNITS = 64  # units drawn in weights.png: one subplot each, about 2 s for 64 (80 s for 2048)


def available() -> bool:
    """Whether matplotlib can be imported (the `plot` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _picture_class():
    from matplotlib.figure import Figure

    class Picture(Figure):
        """A Figure that IPython and Jupyter display as a PNG, whatever the backend."""

        def _repr_png_(self) -> bytes:
            return png_bytes(self)

    return Picture


def figure(figsize: tuple[float, float]):
    """A new Figure of figsize inches (a PNG of figsize x 100 pixels); each function below lays it out
    once, when it is complete (fig.tight_layout()), so every drawing of it is the same picture."""
    return _picture_class()(figsize=figsize)


def png_bytes(fig) -> bytes:
    """The figure as a PNG at 100 dpi (figsize x 100 pixels)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def save(fig, path: Path) -> None:
    """Write the figure to `path` as a PNG, atomically."""
    data = png_bytes(fig)
    write_atomically(Path(path), lambda f: f.write(data))


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


def training_curves(history: list[dict]):
    """Loss and accuracy against iteration, train and dev, from a run's history (nn_gpu.train's)."""
    iterations = [h["iteration"] for h in history]
    fig = figure((10, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
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
    return fig


def confusion_matrix(counts: np.ndarray):
    """The counts of confusion_counts (true label by predicted label), with per-class accuracy."""
    summary = confusion_summary(counts)
    fig = figure((7, 6))
    ax = fig.subplots()
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
    return fig


def predictions_grid(images: np.ndarray, predictions=None, probabilities=None, labels=None):
    """Digits (images: n x 784 uint8, one row per image) in rows of 8, each titled 'predicted
    (probability)' and 'true label', mistakes in red; with no predictions, each titled by its label."""
    n = len(images)
    columns = min(n, 8)
    rows = math.ceil(n / columns)
    fig = figure((1.4 * columns, 1.6 * rows))
    for k, ax in enumerate(fig.subplots(rows, columns, squeeze=False).flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(np.asarray(images[k]).reshape(28, 28), cmap="gray", vmin=0, vmax=255)
        titles, wrong = [], False
        if predictions is not None:
            titles.append(f"{predictions[k]}" + ("" if probabilities is None else f" ({100 * probabilities[k]:.0f}%)"))
            wrong = labels is not None and labels[k] != predictions[k]
        if labels is not None:
            titles.append(f"true {labels[k]}" if predictions is not None else f"{labels[k]}")
        ax.set_title("\n".join(titles), fontsize=8, color="red" if wrong else "black")
    fig.tight_layout()
    return fig


def weights(W1: np.ndarray, hidden: int | None = None):
    """Each row of W1 (units x 784) as a 28 x 28 image, red positive and blue negative, one scale per
    unit; `hidden`, when larger than the units given, is the layer's width, named in the title."""
    W1 = np.asarray(W1)
    units = W1.shape[0]
    columns = min(units, 16)
    rows = math.ceil(units / columns)
    fig = figure((1.1 * columns, 1.2 * rows + 0.5))
    for k, ax in enumerate(fig.subplots(rows, columns, squeeze=False).flat):
        ax.axis("off")
        if k < units:
            limit = np.abs(W1[k]).max() or 1.0
            ax.imshow(W1[k].reshape(28, 28), cmap="bwr", vmin=-limit, vmax=limit)
            ax.set_title(str(k + 1), fontsize=7)
    shown = f" (units 1-{units} of {hidden})" if hidden and hidden > units else ""
    fig.suptitle(f"First-layer weights: what each hidden unit looks for{shown}")
    fig.tight_layout()
    return fig
