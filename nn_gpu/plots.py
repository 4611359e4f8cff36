"""Pictures of what the network learned, as matplotlib Figures (the optional extra `plot`).

    training_curves(history)         loss and accuracy against iteration, train and dev
    confusion_matrix(counts)         dev-set counts, true label by predicted label, with per-class accuracy
    predictions_grid(images, ...)    a grid of digits with their labels, or predicted and true labels
                                     (mistakes in red)
    weights(W, layer)                what a layer's units look for, each unit's weights over the 784
                                     pixels as a 28 x 28 image on one shared scale: at most the
                                     WEIGHT_UNITS most informative units, as the title says
    augmentations(images, ...)       each image beside distorted copies of it, as a training batch
                                     sees them (nn_gpu.augment)
    grid_results(table)              a grid of networks' dev accuracy against each setting that varies,
                                     one point per network, the mean over seeds joined by a line

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
from nn_gpu.stacked import GRID_SETTINGS

PLOT_HINT = "pip install -e '.[plot]'"
WEIGHT_UNITS = 32  # units drawn in weights.png: enough to compare, few enough to see each one


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


def confusion_summary(counts: np.ndarray, classes=None) -> dict:
    """The JSON form of a confusion matrix: the class labels (0..C-1 unless `classes` names them),
    counts, per-class accuracy (recall) and overall accuracy."""
    per_class = counts.diagonal() / np.maximum(counts.sum(axis=1), 1)
    return {
        "rows": "true label",
        "columns": "predicted label",
        "classes": np.arange(len(counts)).tolist() if classes is None else np.asarray(classes).tolist(),
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


def confusion_matrix(counts: np.ndarray, classes=None):
    """The counts of confusion_counts (true label by predicted label), with per-class accuracy; rows
    and columns named by `classes` (default 0..C-1)."""
    summary = confusion_summary(counts, classes)
    names = [str(c) for c in summary["classes"]]
    side = min(max(6, 0.6 * len(names) + 2), 20)
    fig = figure((side + 1, side))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    for (true, predicted), count in np.ndenumerate(counts):
        color = "white" if count > counts.max() / 2 else "black"
        ax.text(predicted, true, str(count), ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=90 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(len(names)), [f"{k} ({100 * a:.0f}%)" for k, a in zip(names, summary["per_class_accuracy"])])
    ax.set(xlabel="predicted label", ylabel="true label (per-class accuracy)")
    ax.set_title(f"Dev set: {summary['total']} samples, accuracy {100 * summary['accuracy']:.2f}%")
    fig.tight_layout()
    return fig


def spread(classes: np.ndarray, n: int) -> np.ndarray:
    """n indices of `classes` taking each class in turn (its first image, then its second, ...), classes in
    order: a gallery of a file sorted by label still shows every digit. All indices when n >= len(classes)."""
    classes = np.asarray(classes)
    rank = np.zeros(len(classes), dtype=np.int64)  # how many earlier images share the image's class
    for label in np.unique(classes):
        where = classes == label
        rank[where] = np.arange(where.sum())
    return np.lexsort((classes, rank))[:n]


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


def informative_units(W: list, layer: int) -> np.ndarray:
    """The units of `layer` (1..L) from the most to the least informative: by the norm of each unit's
    outgoing weights (the column of W_{layer+1} that reads it: how much the next layer listens to it,
    0 for a unit it ignores), or, in the last layer given, by the norm of the unit's input pattern."""
    if layer < len(W):
        strength = np.linalg.norm(np.asarray(W[layer], dtype=np.float64), axis=0)
    else:
        strength = np.linalg.norm(input_patterns(W, layer), axis=1)
    return np.argsort(-strength, kind="stable")


def input_patterns(W: list, layer: int) -> np.ndarray:
    """Each unit of `layer` as weights over the 784 pixels (units x 784): W1 for layer 1, and for a
    deeper layer the product W_layer ... W2 W1, the pattern it answers to with the ReLUs left out."""
    pattern = np.asarray(W[0], dtype=np.float64)
    for W_l in W[1:layer]:
        pattern = np.asarray(W_l, dtype=np.float64) @ pattern
    return pattern


def weights(W, layer: int = 1, units: int = WEIGHT_UNITS):
    """What the units of one layer look for, each as a 28 x 28 image on one shared colour scale (red
    positive, blue negative), so units can be compared: the `units` most informative units
    (informative_units), most informative first, titled by their number in the layer.

    W: the network's weight matrices [W1, ..., WL] (net.W), or W1 alone (units x 784). layer 1 draws
    W1's rows; a deeper one draws input_patterns. Pixels on MNIST's border are 0 in every image, so
    dW1 is 0 there and their weights keep their initial values: the caption says so.
    """
    W = [W] if isinstance(W, np.ndarray) and W.ndim == 2 else list(W)
    if not 1 <= layer <= len(W):
        raise ValueError(f"layer must be 1 to {len(W)}, got {layer}")
    patterns = input_patterns(W, layer)
    output = len(W) > 1 and layer == len(W)  # the softmax layer: one unit per digit
    width = patterns.shape[0]
    order = informative_units(W, layer)[:units]
    shown = patterns[order]
    limit = np.abs(shown).max() or 1.0
    columns = min(len(order), 16)
    rows = math.ceil(len(order) / columns)
    fig = figure((1.1 * columns + 0.8, 1.2 * rows + 1.0))
    fig.set_layout_engine("constrained")  # room for the colour bar and the caption
    axes = fig.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(order):
            image = ax.imshow(shown[k].reshape(28, 28), cmap="bwr", vmin=-limit, vmax=limit)
            ax.set_title(f"digit {order[k]}" if output else str(order[k] + 1), fontsize=7)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02)
    which = "the most informative " if len(order) < width else ""
    of = f"{len(order)} of the {width}" if len(order) < width else f"all {width}"
    what = "W1" if layer == 1 else " ".join(f"W{k}" for k in range(layer, 0, -1)) + " (ReLU left out)"
    fig.suptitle(f"Layer {layer}: what {which}units look for ({of} units, {what}, one colour scale)", fontsize=10)
    fig.supxlabel(
        "Border pixels never change: they are 0 in every MNIST image, so their weights keep their initial values.",
        fontsize=8,
    )
    return fig


def augmentations(images: np.ndarray, labels, distortion, seed: int = 0, copies: int = 5):
    """Each image (n x 784 uint8, one row per image) beside `copies` distortions of it, made by the
    function training uses (nn_gpu.augment.distort, from `seed`): one row per image, titled with its label."""
    from nn_gpu.augment import distort

    rng = np.random.default_rng(seed)
    distorted = [distort(np.asarray(images), distortion, rng) for _ in range(copies)]  # each n x 784, in [0, 1]
    n = len(images)
    fig = figure((1.1 * (copies + 1), 1.25 * n + 0.6))
    axes = fig.subplots(n, copies + 1, squeeze=False)
    for i, row in enumerate(axes):
        for j, ax in enumerate(row):
            ax.axis("off")
            picture = np.asarray(images[i]) / 255 if j == 0 else distorted[j - 1][i]
            ax.imshow(picture.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        row[0].set_title(f"label {labels[i]}", fontsize=8)
    for j in range(1, copies + 1):
        axes[0, j].set_title(f"distorted {j}", fontsize=8)
    d = distortion
    fig.suptitle(
        f"originals, then what training sees:\nrotation up to {d.rotation:g}°, zoom up to {100 * d.scale:g}%, "
        f"shift up to {d.shift:g} px, elastic alpha {d.elastic:g} (sigma {d.sigma:g})",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def grid_results(table):
    """Each network's best dev accuracy (or final train accuracy, without a dev set) against each setting
    that varies in `table` (nn_gpu.commands.grid.results_table's: one row per network): a panel per
    setting, one point per network, so the spread over seeds shows, and the mean at each value joined
    by a line. With only seeds varying, one panel: accuracy against seed."""
    score = "best_dev_accuracy" if table["best_dev_accuracy"].notna().any() else "train_accuracy"
    varied = [name for name in GRID_SETTINGS if table[name].nunique() > 1] or ["seed"]
    fig = figure((4 * len(varied), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(varied)))
    for ax, name in zip(axes, varied):
        values = list(dict.fromkeys(table[name]))  # in the grid's order
        position = table[name].map({v: i for i, v in enumerate(values)})
        ax.scatter(position, 100 * table[score], s=16, alpha=0.6, label="one network")
        means = [100 * table.loc[table[name] == v, score].mean() for v in values]
        ax.plot(range(len(values)), means, "o-", color="black", label="mean")
        ax.set_xticks(range(len(values)), [str(v) if v != "" else "none" for v in values])
        ax.set(xlabel=name.replace("_", " "), ylabel=score.replace("_", " ") + " (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{len(table)} networks trained together")
    fig.tight_layout()
    return fig
