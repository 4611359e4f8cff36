"""What the benchmark compares, each training the same network on the same data.

  notebook    the Kaggle notebook's NumPy code as written there: float64, a one-hot matrix, unfused,
              new arrays every step (kept here as the baseline)
  nn_gpu-cpu  nn_gpu on NumPy, float32: train()'s own step (nn_gpu.step)
  torch-cpu   PyTorch as a PyTorch user writes it: nn.Linear, autograd, torch.optim.SGD (if installed)
  nn_gpu-gpu, torch-gpu  the same on the GPU, when one is usable: nn_gpu's steps replayed as CUDA graphs,
              as train() runs them (nn_gpu-gpu-eager: launched step by step); torch-gpu-graph, PyTorch
              with its step captured in a CUDA graph; nn_gpu-gpu-fused the fused step (nn_gpu.fused), and
              nn_gpu-gpu-fused-ahead its build that loads each tile a tile ahead (H = 10)

Each has step(rows=None) (one SGD step on all samples or on `rows`), accuracy(images, labels) and
synchronize(); nn_gpu's take their batches from their own epoch shuffle (of the same size) and run
`steps(n)` steps at once, as train() queues them.
"""

from __future__ import annotations

import numpy as np

from nn_gpu import parallel
from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.data import rows_to_device
from nn_gpu.device import cpu_device, resolve_device
from nn_gpu.errors import one_line
from nn_gpu.fused_source import FUSED_BUILDS
from nn_gpu.model import Network
from nn_gpu.optim import SGD
from nn_gpu.step import TrainingStep
from nn_gpu.training import TrainingPlan


def synthetic_digits(m: int, seed: int = 0):
    """m x 784 uint8 images with MNIST-like sparsity (about 80% zero pixels) and their labels.

    Made in slices of rows: the same draws as in one piece, without gigabytes of temporaries at m = 1M.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, m).astype(np.uint8)
    prototypes = ((rng.random((10, 784)) < 0.2) * rng.integers(1, 256, (10, 784))).astype(np.uint8)
    images = np.empty((m, 784), dtype=np.uint8)
    for start in range(0, m, 65536):
        rows = labels[start : start + 65536]
        images[start : start + len(rows)] = prototypes[rows] * (rng.random((len(rows), 784)) < 0.9)
    return images, labels


class Notebook:
    """The notebook's code: float64, one-hot, unfused, new arrays each step (db per unit, as corrected)."""

    name = "notebook"

    def __init__(self, images, labels, hidden, alpha=0.1):
        self.X = images.T / 255.0  # 784 x m float64
        self.Y = labels.astype(np.int64)
        self.alpha = alpha
        rng = np.random.default_rng(0)
        self.W1 = rng.random((hidden, 784)) - 0.5
        self.b1 = rng.random((hidden, 1)) - 0.5
        self.W2 = rng.random((10, hidden)) - 0.5
        self.b2 = rng.random((10, 1)) - 0.5

    def step(self, rows=None):
        X = self.X if rows is None else self.X[:, rows]
        Y = self.Y if rows is None else self.Y[rows]
        m = Y.size
        Z1 = self.W1.dot(X) + self.b1
        A1 = np.maximum(Z1, 0)
        Z2 = self.W2.dot(A1) + self.b2
        A2 = np.exp(Z2) / sum(np.exp(Z2))  # the notebook's softmax (it overflows for large Z2)
        one_hot_Y = np.zeros((Y.size, 10))
        one_hot_Y[np.arange(Y.size), Y] = 1
        one_hot_Y = one_hot_Y.T
        dZ2 = A2 - one_hot_Y
        dW2 = 1 / m * dZ2.dot(A1.T)
        db2 = 1 / m * np.sum(dZ2, axis=1, keepdims=True)
        dZ1 = self.W2.T.dot(dZ2) * (Z1 > 0)
        dW1 = 1 / m * dZ1.dot(X.T)
        db1 = 1 / m * np.sum(dZ1, axis=1, keepdims=True)
        self.W1 = self.W1 - self.alpha * dW1
        self.b1 = self.b1 - self.alpha * db1
        self.W2 = self.W2 - self.alpha * dW2
        self.b2 = self.b2 - self.alpha * db2

    def accuracy(self, images, labels) -> float:
        A1 = np.maximum(self.W1.dot(images.T / 255.0) + self.b1, 0)
        return float(np.mean(np.argmax(self.W2.dot(A1) + self.b2, axis=0) == labels))

    def synchronize(self):
        pass


class NNGpu:
    """nn_gpu's Network on a device, float32, stepped by train()'s TrainingStep: graphed on the GPU unless
    graphs=False."""

    def __init__(self, device, images, labels, hidden, alpha=0.1, batch_size=None, graphs=True):
        self.name = f"nn_gpu-{device.name}" + ("-eager" if device.name == "gpu" and not graphs else "")
        self.device = device
        arch = Architecture(hidden, "float32")
        self.network = Network(arch, device, init_parameters(arch, "he", np.random.default_rng(0)))
        self.optimizer = SGD(self.network)
        self.X = rows_to_device(images, device, "float32")
        self.y = device.to_device(labels.astype(np.int32))
        plan = TrainingPlan(learning_rate=alpha, iterations=10**9, batch_size=batch_size)
        self.training = TrainingStep(self.network, self.optimizer, self.X, self.y, plan, 0, 0, graphs=graphs)
        self.done = 0

    def running(self):
        """What nn_gpu.training.train holds for a whole run: BLAS on one thread (nn_gpu.parallel)."""
        return parallel.one_blas_thread()

    def steps(self, n: int) -> None:
        """n steps, queued at once as train() queues them."""
        self.training.run(self.done + 1, self.done + n)
        self.done += n

    def step(self, rows=None):
        self.steps(1)

    def accuracy(self, images, labels) -> float:
        device = self.device
        return self.network.evaluate(
            rows_to_device(images, device, "float32"), device.to_device(labels.astype(np.int32))
        )[1]

    def synchronize(self):
        self.device.synchronize()


class NNGpuFused(NNGpu):
    """nn_gpu's fused GPU step (nn_gpu.fused): uint8 X read once a step, two kernels replayed as a CUDA graph."""

    def __init__(self, device, images, labels, hidden, alpha=0.1, variant=""):
        from nn_gpu import fused

        super().__init__(device, images, labels, hidden, alpha)
        self.name = "nn_gpu-gpu-fused" + (f"-{variant}" if variant else "")
        self.fused = fused.FusedStep(self.network, self.optimizer, images, labels, alpha=alpha, variant=variant)

    def step(self, rows=None):
        self.fused.step(rows)

    steps = None  # step by step, on the rows given


class Torch:
    """PyTorch written as a PyTorch user would: nn.Sequential, CrossEntropyLoss, autograd, optim.SGD; with
    graphed=True (on cuda) each step captured in a CUDA graph (nn_gpu.bench.torch_step)."""

    def __init__(self, device_name, images, labels, hidden, alpha=0.1, seed=0, graphed=False):
        import torch

        from nn_gpu.bench.torch_step import TorchStep

        self.torch = torch
        self.name = f"torch-{device_name}" + ("-graph" if graphed else "")
        self.device = torch.device("cuda" if device_name == "gpu" else "cpu")
        torch.manual_seed(seed)
        sizes = (784, *hidden, 10)
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
        self.model = torch.nn.Sequential(*layers[:-1]).to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=alpha)
        self.loss = torch.nn.CrossEntropyLoss()
        self.X = torch.tensor(images, device=self.device).float() / 255  # m x 784 (a copy: images may be read-only)
        self.y = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        self._step = TorchStep(torch, self.model, self.loss, self.optimizer, graphed=True) if graphed else None

    def step(self, rows=None):
        X = self.X if rows is None else self.X[rows]
        y = self.y if rows is None else self.y[rows]
        if self._step is not None:
            self._step(X, y)
            return
        self.optimizer.zero_grad()
        self.loss(self.model(X), y).backward()
        self.optimizer.step()

    def accuracy(self, images, labels) -> float:
        torch = self.torch
        with torch.no_grad():
            logits = self.model(torch.tensor(images, device=self.device).float() / 255)
        return float((logits.argmax(dim=1).cpu().numpy() == labels).mean())

    def synchronize(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


def torch_available(device_name: str) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return device_name == "cpu" or torch.cuda.is_available()


def implementations(devices, images, labels, hidden, only_nn_gpu=False, batch_size=None):
    """Build, one at a time, each implementation that can run here on the same data."""
    if "cpu" in devices and len(hidden) == 1 and not only_nn_gpu:
        yield Notebook(images, labels, hidden[0])
    for name in devices:
        device = cpu_device() if name == "cpu" else resolve_device("gpu")
        yield NNGpu(device, images, labels, hidden, batch_size=batch_size)
        if name == "gpu":
            yield NNGpu(device, images, labels, hidden, batch_size=batch_size, graphs=False)
        if torch_available(name) and not only_nn_gpu:
            yield Torch(name, images, labels, hidden)
            if name == "gpu":
                try:
                    yield Torch(name, images, labels, hidden, graphed=True)
                except Exception as error:  # reported, not fatal to the rest of the benchmark
                    print(f"torch-gpu-graph failed: {type(error).__name__}: {one_line(error)[:300]}")
        variants = [v for d, h, v in FUSED_BUILDS if d == "float32" and (h,) == tuple(hidden)]
        for variant in variants if name == "gpu" else []:  # last: not yet proven on a card
            try:
                fused = NNGpuFused(device, images, labels, hidden, variant=variant)
                fused.step()
            except Exception as error:  # reported, not fatal to the rest of the benchmark
                print(f"nn_gpu-gpu-fused {variant} failed: {type(error).__name__}: {one_line(error)[:300]}")
                continue
            yield fused
