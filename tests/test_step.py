"""The training step as device work alone (nn_gpu.step), checked on the CPU with the GPU's rules.

On a GPU the step is captured in a CUDA graph, which holds only queued device work. So here it runs
on arrays that refuse every host read (tests/guarded.py), for every optimiser, dropout and label
smoothing, and its kernels are counted against the budgets; the scalars it reads from the schedule
table are the host's bit for bit, resumed runs included; its batches are the epoch's shuffle; and a
run of steps is the hand loop of forward, backward and step(lr), bit for bit.
"""

import dataclasses
import math

import numpy as np
import pytest
from helpers import synthetic_digits

import guarded
from nn_gpu import parallel
from nn_gpu import step as step_module
from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.cpu import CPU_OPS
from nn_gpu.device import cpu_device
from nn_gpu.dropout import Dropout, layer_rates
from nn_gpu.model import Network
from nn_gpu.ops import REFERENCE_OPS
from nn_gpu.optim import Adam, ScheduleTable, learning_rate, make_optimizer
from nn_gpu.step import TrainingStep, epoch_order
from nn_gpu.training import Batches, TrainingPlan

RECIPES = {  # name: (hidden, batch size, optimizer, its settings, dropout, label smoothing, schedule)
    "notebook job": ((10,), None, "sgd", {}, None, 0.0, "constant"),
    "mini-batch, momentum": ((128,), 128, "sgd", {"momentum": 0.9, "weight_decay": 1e-4}, None, 0.0, "cosine"),
    "adam, smoothing": ((32, 16), 100, "adam", {"weight_decay": 1e-3}, None, 0.1, "step"),
    "best recipe": ((1024, 1024), 128, "adamw", {"weight_decay": 0.01}, (0.2, 0.5), 0.0, "cosine"),
    "three layers, dropout, smoothing": ((24, 20, 16), 64, "adamw", {}, (0.1, 0.5, 0.3), 0.1, "cosine"),
}


def build(device, recipe, images, labels, dtype="float32", iterations=500):
    hidden, batch, name, settings, rates, eps, schedule = RECIPES[recipe]
    arch = Architecture(hidden, dtype)
    network = Network(arch, device, init_parameters(arch, "he", np.random.default_rng(0)))
    optimizer = make_optimizer(name, network, **settings)
    plan = TrainingPlan(
        learning_rate=1e-3 if name != "sgd" else 0.05, iterations=iterations, batch_size=batch, dropout=rates,
        label_smoothing=eps, lr_schedule=schedule,
    )  # fmt: skip
    X = device.to_device((images / np.asarray(255, dtype)).T)  # as the GPU holds it: A0, n0 x m, floating
    return network, optimizer, plan, X, device.to_device(labels.astype(np.int32))


@pytest.fixture(scope="module")
def digits():
    return synthetic_digits(300, seed=1)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_a_step_reads_nothing_back_and_is_the_cpus_step(recipe, digits):
    images, labels = digits
    results = {}
    for name, device in (("guarded", guarded.guarded_device(CPU_OPS)), ("cpu", cpu_device())):
        network, optimizer, plan, X, y = build(device, recipe, images, labels)
        step = TrainingStep(network, optimizer, X, y, plan, seed=3, done=0)
        with parallel.one_blas_thread():  # as train() runs: BLAS on more threads adds in another order
            step.run(1, 7)  # across an epoch's end (3 batches of 100 or 128 a 300-sample epoch)
        results[name] = (network.flat.view(np.ndarray).copy(), np.asarray(step.sums.view(np.ndarray)).copy())
    np.testing.assert_array_equal(results["guarded"][0], results["cpu"][0])  # the same step, bit for bit
    np.testing.assert_array_equal(results["guarded"][1], results["cpu"][1])


def test_the_guard_catches_a_host_read():
    device = guarded.guarded_device(CPU_OPS)
    array = device.to_device(np.ones(3))
    for read in (float, int, bool, lambda a: a.item(), lambda a: a.tolist(), device.to_host):
        with pytest.raises(guarded.HostRead):
            read(array.sum() if read is not device.to_host else array)
    with pytest.raises(guarded.HostRead):
        if array[0] > 0:  # a branch on device memory
            pass


BUDGETS = {"notebook job": 9, "mini-batch, momentum": 11, "best recipe": 20}


@pytest.mark.parametrize("recipe", list(BUDGETS))
def test_each_step_launches_no_more_kernels_than_its_budget(recipe, digits):
    images, labels = digits
    device = guarded.guarded_device(CPU_OPS)
    network, optimizer, plan, X, y = build(device, recipe, images, labels)
    step = TrainingStep(network, optimizer, X, y, plan, seed=3, done=0)
    step.run(1, 1)  # the epoch's shuffle is uploaded before step 1
    guarded.reset()
    step.run(2, 2)  # a step in the middle of an epoch: device work alone
    assert guarded.KERNELS.stray == []  # every array operation of a step is an op-table call ...
    assert len(guarded.KERNELS.ops) <= BUDGETS[recipe], guarded.KERNELS.ops  # ... one kernel each on the GPU
    expected = {
        "notebook job": ["product", "bias_relu", "product", "output_layer", "product", "product", "relu_backward",
                         "product", "sgd_update"],
        "mini-batch, momentum": ["gather", "product", "bias_relu", "product", "output_layer", "product", "product",
                                 "relu_backward", "product", "sgd_update"],
        "best recipe": ["gather", "dropout", "product", "bias_relu", "product", "bias_relu", "product", "output_layer",
                        "product", "product", "relu_backward", "product", "product", "relu_backward", "product",
                        "adam_update"],
    }[recipe]  # fmt: skip
    assert guarded.KERNELS.ops == expected


def test_the_kernel_count_notices_work_outside_the_op_table(digits, monkeypatch):
    images, labels = digits
    device = guarded.guarded_device(CPU_OPS)
    network, optimizer, plan, X, y = build(device, "notebook job", images, labels)
    step = TrainingStep(network, optimizer, X, y, plan, seed=3, done=0)
    update = optimizer.update
    monkeypatch.setattr(
        optimizer, "update", lambda rows, done, count: (network.flat_grad.__itruediv__(1), update(rows, done, count))
    )
    guarded.reset()
    step.run(1, 1)
    assert guarded.KERNELS.stray == ["divide.__call__"]


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
def test_the_schedule_table_holds_the_hosts_scalars_bit_for_bit(name, schedule):
    network = Network.create(hidden=(3,), device="cpu", dtype="float32")
    optimizer = make_optimizer(name, network, weight_decay=0.01)
    total = 50
    for window in (1, 7, 50, 64):
        table = ScheduleTable(optimizer, schedule, 0.01, total, window)
        for first in (1, 6, 8, 37, 50):  # a run starting there: a fresh one, or one resumed
            table.load(first)
            for t in range(first, min(table.window_end(first), total) + 1):
                lr = learning_rate(schedule, 0.01, t, total)
                row = np.array(optimizer.scalars(t, lr), dtype=np.float32)  # step(lr)'s scalars, rounded to T
                np.testing.assert_array_equal(table.rows[(t - 1) % table.window], row, err_msg=f"t={t}")
    assert isinstance(optimizer, Adam) == (name != "sgd")


def test_the_gather_takes_the_batches_of_the_epochs_shuffle(digits):
    images, labels = digits
    m, size = 300, 128  # batches of 128, 128 and 44
    plan = TrainingPlan(iterations=10, batch_size=size)
    batches = Batches(m, plan, 5, np)
    X, y = images.T, np.arange(m)  # label = row: the gather's labels say which rows it took
    for t in range(1, 11):
        order = epoch_order(m, 5, (t - 1) // plan.batches_per_epoch(m))
        count = min(size, m - (t - 1) % 3 * size)
        X_batch, y_batch = REFERENCE_OPS.gather(X, y, order, np.array([t - 1]), 0, 3, size, count)
        np.testing.assert_array_equal(y_batch, batches.rows(t))
        np.testing.assert_array_equal(X_batch, X[:, batches.rows(t)])


@pytest.mark.parametrize(("m", "batch", "window"), [(300, 128, 4096), (300, 100, 4), (50, 16, 3), (41, None, 5)])
def test_runs_of_steps_never_cross_an_epoch_a_batch_size_or_a_window(m, batch, window, monkeypatch):
    monkeypatch.setattr(step_module, "SCHEDULE_WINDOW", window)
    network = Network.create(hidden=(3,), device="cpu")
    plan = TrainingPlan(iterations=40, batch_size=batch)
    X, y = np.zeros((784, m), np.uint8), np.zeros(m, np.int32)
    step = TrainingStep(network, make_optimizer("sgd", network), X, y, plan, seed=0, done=0)
    t, chunks = 1, []
    while t <= 40:
        last = step.chunk_end(t, 40)
        chunks.append((t, last))
        t = last + 1
    per_epoch = plan.batches_per_epoch(m)
    for first, last in chunks:
        assert first <= last
        if batch is not None:  # full batches have no shuffle
            assert (first - 1) // per_epoch == (last - 1) // per_epoch  # one epoch, one shuffle
        assert len({step.count(t) for t in range(first, last + 1)}) == 1  # one batch size, one graph
        assert (first - 1) // step.schedule.window == (last - 1) // step.schedule.window
    assert step.run(1, 1) == (batch or m)
    assert step.run(2, 40) == sum(step.count(t) for t in range(2, 41))


def hand_loop(network, optimizer, images, labels, plan, seed, steps):
    """Forward, backward (Network.gradients) and optimizer.step(lr), by hand, on train()'s batches."""
    batches = Batches(len(labels), plan, seed, np)
    rates = layer_rates(plan.dropout, network.n_layers - 1)
    total = plan.total_iterations(len(labels))
    for t in range(1, steps + 1):
        rows = batches.rows(t)
        dropout = Dropout.at(rates, seed, t, np, network.arch.dtype) if any(rates) else None
        network.gradients(images[rows].T, labels[rows], dropout, plan.label_smoothing)
        optimizer.step(learning_rate(plan.lr_schedule, plan.learning_rate, t, total))


@pytest.mark.parametrize("recipe", ["adam, smoothing", "three layers, dropout, smoothing"])
def test_a_run_of_steps_is_the_hand_loop_bit_for_bit(recipe, digits):
    images, labels = digits
    cpu = cpu_device()
    runs = []
    for by_hand in (False, True):
        network, optimizer, plan, _, _ = build(cpu, recipe, images, labels, dtype="float64", iterations=9)
        with parallel.one_blas_thread():
            if by_hand:
                hand_loop(network, optimizer, images, labels.astype(np.int32), plan, 3, 9)
            else:
                step = TrainingStep(network, optimizer, images.T, labels.astype(np.int32), plan, seed=3, done=0)
                for first, last in ((1, 1), (2, 3), (4, 9)):
                    step.run(first, last)
        runs.append(network.flat.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_the_masks_change_with_the_step_the_layer_and_the_seed():
    draws = [Dropout.at((0.5, 0.5), seed, step, np, "float32").draws(0, 64) for seed, step in ((0, 1), (0, 2), (1, 1))]
    kept = [[d.kept(32, 64) for d in layer] for layer in draws]
    assert not np.array_equal(kept[0][0], kept[0][1])  # another layer
    assert not np.array_equal(kept[0][1], kept[1][1])  # another step
    assert not np.array_equal(kept[0][1], kept[2][1])  # another seed
    assert math.isclose(kept[0][1].mean(), 0.5, abs_tol=0.05)


class ReplayedGraph:
    """A stand-in for a CUDA graph of `steps` steps on `count` samples: launching it runs them now."""

    def __init__(self, step, count, steps):
        self.step, self.count, self.steps, self.launches = step, count, steps, 0

    def launch(self):
        self.launches += 1
        for _ in range(self.steps):
            self.step._step(self.count)


def test_graph_replays_take_every_step_once_in_order(digits, monkeypatch):
    """The bookkeeping of the graphed path, on the CPU: the first step of each batch size eager, then runs
    of 16-step and single-step graphs. Replaying graphs that run the step now must give the eager run's bits."""
    images, labels = digits
    finals, graphs = [], None
    for graphed in (False, True):
        network, optimizer, plan, X, y = build(cpu_device(), "three layers, dropout, smoothing", images, labels,
                                               dtype="float64", iterations=100)  # fmt: skip
        plan = dataclasses.replace(plan, batch_size=8)  # epochs of 38 steps: 37 of 8 samples, then 4
        step = TrainingStep(network, optimizer, X, y, plan, seed=3, done=0)
        if graphed:
            step.graphed = True
            monkeypatch.setattr(step, "_capture", lambda count, steps, step=step: ReplayedGraph(step, count, steps))
        with parallel.one_blas_thread():
            for first in range(1, 101, 40):  # runs of up to 40 steps, cut at each epoch's short batch
                step.run(first, min(100, first + 39))
        finals.append((network.flat.copy(), step.done.copy(), step.sums.copy()))
        graphs = step.graphs
    for graphed, eager in zip(*finals):
        np.testing.assert_array_equal(graphed, eager)
    assert finals[1][1][0] == 100
    assert set(graphs) == {(8, 1), (8, 16), (4, 1), (4, 16)}
    assert graphs[8, 16].launches == 2 + 2 + 1  # runs of 36 (after the eager first), 35 and 20 steps of 8
    assert sum(g.launches * g.steps for g in graphs.values()) == 100 - 2  # all but each batch size's first step
