"""nn_gpu from Python: what `import nn_gpu` offers besides the Network itself.

    data = nn_gpu.load_dataset("sample")                  # data.X: 784 x m, data.y: m labels
    train_set, dev_set = data.split(dev_size=1000)
    net = nn_gpu.Network.create(hidden=(10,), device="cpu", seed=0)
    progress = nn_gpu.train(net, train_set.X, train_set.y, dev=(dev_set.X, dev_set.y))
    nn_gpu.save_model(net, "model.npz"); net = nn_gpu.load_model("model.npz")

X is always n0 x m, one column per sample (the notebook's layout; 784 x m for digits): uint8 pixels
0..255, or floating values (pixels / 255, or scaled features). For rows as samples and any labels,
scikit-learn's way, see nn_gpu.MLPClassifier (nn_gpu/estimator.py). `train` is train.py's loop (nn_gpu.training), on the network's device.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from nn_gpu import checkpoint, handwriting, training
from nn_gpu.config import RunConfig
from nn_gpu.device import Device, resolve_device
from nn_gpu.errors import DataError
from nn_gpu.model import Network, check_columns
from nn_gpu.optim import make_optimizer
from nn_gpu.report import log_line


def train(
    net: Network,
    X,
    y,
    *,
    learning_rate: float = 0.10,
    iterations: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    lr_schedule: str = "constant",
    optimizer: str = "sgd",
    dropout: tuple[float, ...] | None = None,
    augment: str | None = None,
    label_smoothing: float = 0.0,
    average_weights: float = 0.0,
    dev: tuple | None = None,
    seed: int = 0,
    log_interval: int | None = None,
    log: Callable[[str], None] | None = print,
    graphs: bool = True,
) -> training.Progress:
    """Train `net` in place on X (n0 x m, one column per sample) and labels y (m, 0..C-1), as train.py does.

    The settings are train.py's flags of the same names, checked as they are (nn_gpu.config.RunConfig:
    ValueError naming the setting). The defaults are the notebook's: full-batch gradient descent,
    learning rate 0.10 (its alpha), 500 iterations. With batch_size, each iteration is a step on the
    next mini-batch of a per-epoch shuffle drawn from seed; epochs, when given, replaces iterations, in
    mini-batches of 64 unless batch_size says otherwise (an epoch as Keras and PyTorch mean it). dev:
    (X_dev, y_dev), evaluated every log_interval iterations (default 10, or once an epoch when training
    by epochs). log receives one line per evaluation (None: silent). optimizer: "sgd", "adam" or
    "adamw" (nn_gpu.optim); dropout: rates (input, hidden...), e.g. (0.2, 0.5) (nn_gpu.dropout);
    augment: a recipe like "affine" or "shift+flip+erase" (nn_gpu.augment); label_smoothing: eps of the
    targets; average_weights: the decay of the weights' moving average, evaluated and kept as the model
    (nn_gpu.averaging); graphs: on the GPU, replay each step as a CUDA graph (False: launch its kernels
    from Python, the same numbers). Returns the Progress: .history (a dict per evaluation), .final
    (train and dev loss and accuracy), .train_seconds, and with dev .best_iteration, .best_dev_accuracy.

    With no momentum and no weight decay, each iteration is exactly forward, backward and step: the
    same numbers, bit for bit on the CPU while a batch fits in one block of 1,024 samples (a larger
    one is summed block by block, a different order of additions).
    """
    config = RunConfig(
        hidden=net.arch.hidden, dtype=net.arch.dtype, learning_rate=learning_rate, iterations=iterations,
        epochs=epochs, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
        lr_schedule=lr_schedule, optimizer=optimizer, dropout=None if dropout is None else tuple(dropout),
        augment=augment, label_smoothing=label_smoothing, seed=seed, log_interval=log_interval,
        batch_norm=net.arch.batch_norm, average_weights=average_weights,
    )  # fmt: skip
    X, y = _on_device(net, X, y)
    dev = None if dev is None else _on_device(net, *dev)

    def on_log(entry: dict) -> None:  # returns None whatever log returns (file.write's count): never a stop
        if log:
            log(log_line(entry))

    opt = make_optimizer(optimizer, net, momentum, weight_decay)
    hooks = training.Hooks(on_log=on_log)
    return training.train(net, opt, X, y, dev, config.plan(), seed=seed, hooks=hooks, graphs=graphs)


def _on_device(net: Network, X, y):
    """(X, y) on the network's device, checked. uint8 pixels stay uint8 on the CPU, scaled block by
    block as training goes, as train.py's do (nn_gpu.data.rows_to_device); anything else becomes A0 here."""
    X = np.asarray(X) if net.device.name == "cpu" else X
    X = check_columns(X, net.arch.n_inputs) if net.device.name == "cpu" and X.dtype == np.uint8 else net.inputs(X)
    return X, net.labels(y, X.shape[1])


def save_model(net: Network, path: str | Path) -> None:
    """Write `net` to a model.npz (atomically) that load_model and predict.py read."""
    checkpoint.save_model(Path(path), net.arch, [net.device.to_host(p) for p in net.arrays])


def load_model(path: str | Path, device: str | Device = "auto") -> Network:
    """The Network saved in a model.npz (by train.py or save_model), on `device`; ModelFileError, naming
    the file and what is wrong with it, for anything that is not exactly one."""
    arch, params = checkpoint.load_model(Path(path))
    return Network(arch, resolve_device(device) if isinstance(device, str) else device, params)


def read_digit(picture: str | Path | bytes, max_pixels: int | None = None) -> np.ndarray:
    """A picture of one handwritten digit, at a path or as the bytes of its file (an upload), made
    MNIST-like (nn_gpu.handwriting): X of one column, 784 x 1 uint8, for net.predict. DataError naming
    the file (or "the picture", for bytes) when it cannot be read, holds no ink, or has more than
    max_pixels pixels (default: Pillow's limit, about 89 million)."""
    picture = picture if isinstance(picture, bytes) else Path(picture)
    try:
        digit = handwriting.preprocess(handwriting.load_grayscale(picture, max_pixels))
    except ValueError as error:
        raise DataError(f"{handwriting.name_of(picture)}: {error}") from None
    return digit.reshape(784, 1)
