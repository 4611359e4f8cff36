"""nn_gpu: a digit-recognising network with every equation of backpropagation written by hand.

The same forward and backward code runs on NumPy (CPU) or CuPy (GPU, with custom CUDA kernels).
From Python, in the notebook's names (X is 784 x m, one column per sample, everywhere):

    import nn_gpu
    data = nn_gpu.load_dataset("sample")                # data.X: 784 x 5000, data.y: 5000 labels
    X, y = data.X[:, :1000], data.y[:1000]
    net = nn_gpu.Network.create(hidden=(10,), device="cpu", seed=0)
    cache = net.forward(X, keep=True)                   # A0, Z1, A1, Z2, A2
    grads = net.backward(cache, y)                      # dZ2, dW2, db2, dZ1, dW1, db1
    net.step(grads, alpha=0.10)                         # W := W - alpha dW, b := b - alpha db
    nn_gpu.gradcheck(net, X[:, :16], y[:16])            # each gradient against finite differences
    nn_gpu.train(net, X, y)                             # the same steps, fast: train.py's loop

For rows of any features and any labels, scikit-learn's way (n x d, rows as samples):

    clf = nn_gpu.MLPClassifier(hidden_layer_sizes=(256,), max_iter=20, device="auto").fit(X, y)
    clf.predict(X_test); clf.score(X_test, y_test)    # in Pipeline and GridSearchCV too

Many networks at once (seeds, learning rates, weight decays, dropout, label smoothing), X read once a step:

    results = nn_gpu.train_many(X, y, seeds=range(8), learning_rate=[0.1, 0.05])   # one Result each

Start reading with nn_gpu/model.py; docs/math.md derives every equation.
"""

__version__ = "0.1.0"  # pyproject.toml reads it from here

from nn_gpu import plots  # noqa: E402
from nn_gpu.api import load_model, read_digit, save_model, train
from nn_gpu.arrays import Arrays
from nn_gpu.data import Dataset, load_dataset
from nn_gpu.device import Device, gpu_unavailable_reason, resolve_device
from nn_gpu.estimator import MLPClassifier
from nn_gpu.gradient_check import gradcheck
from nn_gpu.many import train_many
from nn_gpu.model import Network
from nn_gpu.search import MLPGridSearchCV

__all__ = [
    "Arrays",
    "Dataset",
    "Device",
    "MLPClassifier",
    "MLPGridSearchCV",
    "Network",
    "gpu_unavailable_reason",
    "gradcheck",
    "load_dataset",
    "load_model",
    "plots",
    "read_digit",
    "resolve_device",
    "save_model",
    "train",
    "train_many",
]
