"""The accuracy comparison: nn_gpu and PyTorch trained alike over several seeds, on the data given."""

from __future__ import annotations

import time

import numpy as np

from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.bench.implementations import Torch, torch_available
from nn_gpu.data import load_dataset, rows_to_device, split_dev
from nn_gpu.device import cpu_device
from nn_gpu.model import Network
from nn_gpu.optim import SGD
from nn_gpu.training import TrainingPlan, epoch_order, train


def accuracy_run(impl: str, hidden, train_set, test_set, seed, epochs=10, batch_size=128, alpha=0.05, momentum=0.9):
    """Train `impl` ("nn_gpu-cpu" or "torch-cpu") with mini-batch SGD and momentum; test accuracy and seconds.

    Both see the same batches: epoch e's shuffle comes from (seed, e), as in nn_gpu.training.
    """
    m = len(train_set)
    started = time.perf_counter()
    if impl == "nn_gpu-cpu":
        device = cpu_device()
        arch = Architecture(tuple(hidden), "float32")
        network = Network(arch, device, init_parameters(arch, "he", np.random.default_rng(seed)))
        X, y = rows_to_device(train_set.rows, device, "float32"), train_set.labels.astype(np.int32)
        plan = TrainingPlan(learning_rate=alpha, epochs=epochs, batch_size=batch_size, log_interval=0)
        train(network, SGD(network, momentum=momentum), X, y, None, plan, seed=seed)
        seconds = time.perf_counter() - started
        _, accuracy = network.evaluate(
            rows_to_device(test_set.rows, device, "float32"), test_set.labels.astype(np.int32)
        )
        return accuracy, seconds
    torch_impl = Torch("cpu", train_set.rows, train_set.labels, tuple(hidden), alpha, seed)
    torch_impl.optimizer = torch_impl.torch.optim.SGD(torch_impl.model.parameters(), lr=alpha, momentum=momentum)
    for epoch in range(epochs):
        order = epoch_order(m, seed, epoch)
        for start in range(0, m, batch_size):
            torch_impl.step(torch_impl.torch.from_numpy(order[start : start + batch_size]))
    seconds = time.perf_counter() - started
    return torch_impl.accuracy(test_set.rows, test_set.labels), seconds


def accuracy_benchmark(data=("sample",), seeds=tuple(range(10))) -> list[dict]:
    """Test accuracy and CPU time of nn_gpu and PyTorch: hidden 128 and 256,128, 10 epochs, batch 128,
    alpha 0.05, momentum 0.9, over several seeds, on each source in `data` (anything load_dataset
    reads). A source with its own test set (MNIST's t10k files) is tested on it; otherwise 1,000 of
    its samples are held out (always the same ones) and tested on."""
    print("| data | hidden | impl | mean test accuracy | per seed | mean seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = []
    impls = ("nn_gpu-cpu", "torch-cpu") if torch_available("cpu") else ("nn_gpu-cpu",)
    for source in data:
        dataset = load_dataset(source)
        if dataset.test is not None and dataset.test.labels is not None:
            train_set, test_set = dataset, dataset.test
        else:
            train_set, test_set = split_dev(dataset, 1000, np.random.default_rng(0))
        name = f"{source} ({len(train_set):,} train / {len(test_set):,} test)"
        for hidden in ((128,), (256, 128)):
            for impl in impls:
                runs = [accuracy_run(impl, hidden, train_set, test_set, seed) for seed in seeds]
                accuracies, times = zip(*runs)
                row = {"workload": "accuracy", "data": name, "hidden": list(hidden), "impl": impl, "seeds": list(seeds)}
                row.update(test_accuracies=list(accuracies), mean_test_accuracy=float(np.mean(accuracies)))
                row.update(mean_seconds=float(np.mean(times)))
                rows.append(row)
                print(
                    f"| {name} | {','.join(map(str, hidden))} | {impl} | {row['mean_test_accuracy']:.4f} | "
                    f"{' '.join(f'{a:.4f}' for a in accuracies)} | {row['mean_seconds']:.2f} |",
                    flush=True,
                )
    return rows
