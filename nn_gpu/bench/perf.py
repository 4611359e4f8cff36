"""bench.py --perf: nn_gpu's training step on the card, launched step by step and replayed as CUDA graphs,
beside PyTorch eager and PyTorch with the same step captured in a CUDA graph.

For each job below: 50 eager steps and 50 graphed steps from the same start must agree bit for bit
(parameters, optimiser state, loss and accuracy sums), with CuPy's memory pool churned between
capture and replay; then STEPS steps of each are timed with CUDA events (after a warm-up run), and
printed against the targets (printed, never asserted). The graph's nodes are counted from the
driver. On the CPU only the eager nn_gpu step is timed (a check that the code runs).
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from nn_gpu import step as step_module
from nn_gpu.architecture import Architecture, init_parameters
from nn_gpu.bench.implementations import synthetic_digits, torch_available
from nn_gpu.data import rows_to_device
from nn_gpu.device import resolve_device
from nn_gpu.dropout import layer_rates
from nn_gpu.errors import one_line
from nn_gpu.model import Network
from nn_gpu.optim import make_optimizer
from nn_gpu.training import TrainingPlan

JOBS = {  # hidden, batch, optimizer, its settings, alpha, dropout, schedule
    "notebook job": ((10,), None, "sgd", {}, 0.1, None, "constant"),
    "mini-batch 128, hidden 128": ((128,), 128, "sgd", {"momentum": 0.9}, 0.05, None, "constant"),
    "best recipe": ((1024, 1024), 128, "adamw", {"weight_decay": 0.01}, 1e-3, (0.2, 0.5), "cosine"),
    "MLPClassifier, adam": ((100,), 200, "adam", {"weight_decay": 1e-4 / 200}, 1e-3, None, "constant"),
}
TARGETS = {  # job: (target, what it is measured against)
    "notebook job": "<= 200 us",
    "mini-batch 128, hidden 128": "<= 40 us",
    "best recipe": ">= 3x torch eager, < torch graphed",
    "MLPClassifier, adam": "fit >= 10x sklearn (--estimators)",
}
AGREE_STEPS, STEPS, M = 50, 300, 41000
NODE_TYPES = {0: "kernel", 1: "memcpy", 2: "memset", 3: "host", 4: "graph", 5: "empty", 10: "alloc", 11: "free"}


def graph_nodes(graph) -> Counter:
    """How many nodes of each type a CuPy CUDA graph holds, as the driver lists them (Linux)."""
    import ctypes

    driver = ctypes.CDLL("libcuda.so.1")
    handle, count = ctypes.c_void_p(graph.graph), ctypes.c_size_t(0)
    driver.cuGraphGetNodes(handle, None, ctypes.byref(count))
    nodes = (ctypes.c_void_p * count.value)()
    driver.cuGraphGetNodes(handle, nodes, ctypes.byref(count))
    kinds = Counter()
    for node in nodes:
        kind = ctypes.c_int()
        driver.cuGraphNodeGetType(ctypes.c_void_p(node), ctypes.byref(kind))
        kinds[NODE_TYPES.get(kind.value, str(kind.value))] += 1
    return kinds


def build(device, job: str, images, labels, steps: int, graphs: bool):
    """A network, its optimiser and a TrainingStep for `job`, from seed 0, on images and labels."""
    hidden, batch, name, settings, alpha, rates, schedule = JOBS[job]
    arch = Architecture(hidden, "float32")
    network = Network(arch, device, init_parameters(arch, "he", np.random.default_rng(0)))
    optimizer = make_optimizer(name, network, **settings)
    plan = TrainingPlan(learning_rate=alpha, iterations=steps, batch_size=batch, dropout=rates, lr_schedule=schedule)
    X, y = rows_to_device(images, device, "float32"), device.to_device(labels.astype(np.int32))
    return network, optimizer, step_module.TrainingStep(network, optimizer, X, y, plan, seed=0, done=0, graphs=graphs)


def churn(xp) -> None:
    """Allocate and free NaN-filled arrays of many sizes from CuPy's pool, as other code would."""
    rng = np.random.default_rng(0)
    for _ in range(8):
        held = [xp.full(int(n), xp.nan, dtype=xp.float32) for n in rng.integers(1, 2**20, 16)]
        del held


def agreement(device, job: str, images, labels) -> bool:
    """Whether AGREE_STEPS graphed steps give the eager ones' bits, with the pool churned between capture and replay."""
    finals = []
    for graphs in (False, True):
        network, optimizer, step = build(device, job, images, labels, AGREE_STEPS, graphs)
        for first in range(1, AGREE_STEPS + 1, 10):  # the graphs are captured in the first run of steps
            step.run(first, first + 9)
            if graphs:
                churn(device.xp)
        finals.append([device.to_host(a) for a in (network.flat, *optimizer.state, step.sums, step.done)])
    return all(np.array_equal(a, b) for a, b in zip(*finals))


def seconds_per_step(time_run, steps: int, events=None) -> float:
    """Seconds a step of time_run(first, last), timed over `steps` steps after a warm-up run of 20:
    with events = (start, end) CUDA events of the stream the steps run on (end.synchronize() and
    start.elapsed(end) in ms), else by the host's clock."""
    time_run(1, 20)
    if events is None:
        started = time.perf_counter()
        time_run(21, 20 + steps)
        return (time.perf_counter() - started) / steps
    start, end = events
    start.record()
    time_run(21, 20 + steps)
    end.record()
    end.synchronize()
    return start.elapsed(end) / 1000 / steps


class CupyEvent:
    """A CuPy CUDA event with the calls seconds_per_step makes."""

    def __init__(self, cp):
        self.cp, self.event = cp, cp.cuda.Event()

    def record(self):
        self.event.record()

    def synchronize(self):
        self.event.synchronize()

    def elapsed(self, end) -> float:
        return self.cp.cuda.get_elapsed_time(self.event, end.event)


class TorchEvent(CupyEvent):
    def __init__(self, torch):
        self.event = torch.cuda.Event(enable_timing=True)

    def elapsed(self, end) -> float:
        return self.event.elapsed_time(end.event)


def nn_gpu_time(device, job, images, labels, steps: int, graphs: bool) -> tuple[float, Counter | None]:
    _, _, step = build(device, job, images, labels, steps + 20, graphs)
    events = (CupyEvent(device.xp), CupyEvent(device.xp)) if device.name == "gpu" else None
    seconds = seconds_per_step(step.run, steps, events)
    count = step.count(21)
    return seconds, graph_nodes(step.graphs[count, 1]) if (count, 1) in step.graphs else None


def torch_time(job: str, images, labels, steps: int, graphed: bool) -> float:
    """PyTorch's seconds a step for `job` on cuda: the same network, optimiser, dropout and batches."""
    import torch

    from nn_gpu.bench.torch_step import TorchStep, mlp, optimizer, set_learning_rate
    from nn_gpu.optim import learning_rate

    hidden, batch, name, settings, alpha, rates, schedule = JOBS[job]
    torch.manual_seed(0)
    model = mlp(torch, (784, *hidden, 10), layer_rates(rates, len(hidden))).cuda()
    opt = optimizer(torch, name, model.parameters(), alpha, settings.get("momentum", 0.0),
                    settings.get("weight_decay", 0.0), graphed)  # fmt: skip
    step = TorchStep(torch, model, torch.nn.CrossEntropyLoss(), opt, graphed)
    X = torch.tensor(images, device="cuda").float() / 255
    y = torch.from_numpy(labels.astype(np.int64)).cuda()
    order = torch.randperm(len(y), device="cuda")
    total = steps + 20

    def time_run(first, last):
        for t in range(first, last + 1):
            if schedule != "constant":  # as LambdaLR would, written out: a tensor on the card when graphed
                set_learning_rate(opt, learning_rate(schedule, alpha, t, total))
            if batch is None:
                step(X, y)
            else:
                start = (t - 1) * batch % (len(y) - batch + 1)
                rows = order[start : start + batch]
                step(X[rows], y[rows])

    return seconds_per_step(time_run, steps, (TorchEvent(torch), TorchEvent(torch)))


def perf(device_name: str, quick: bool = False) -> list[dict]:
    """The rows: per job, agreement and microseconds a step of each implementation; printed as made."""
    device = resolve_device(device_name)
    on_gpu = device.name == "gpu"
    m, steps = (2000, 20) if quick else (M, STEPS)
    images, labels = synthetic_digits(m)
    with_torch = on_gpu and torch_available("gpu")
    print(
        "| job | eager = graphed | nn_gpu eager us | nn_gpu graphed us | torch eager us | torch graphed us | graph nodes | target |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for job in JOBS:
        row = {"job": job, "device": device.name, "m": m, "steps": steps, "target": TARGETS[job]}
        try:
            row["bit_for_bit"] = agreement(device, job, images, labels) if on_gpu else None
            row["eager_us"] = 1e6 * nn_gpu_time(device, job, images, labels, steps, False)[0]
            if on_gpu:
                seconds, nodes = nn_gpu_time(device, job, images, labels, steps, True)
                row["graphed_us"], row["graph_nodes"] = 1e6 * seconds, dict(nodes or {})
        except Exception as error:  # reported, and the other jobs still run
            row["error"] = f"{type(error).__name__}: {one_line(error)[:300]}"
        for graphed in (False, True) if with_torch else ():
            key = "torch_graphed_us" if graphed else "torch_eager_us"
            try:
                row[key] = 1e6 * torch_time(job, images, labels, steps, graphed)
            except Exception as error:
                row[f"{key}_error"] = f"{type(error).__name__}: {one_line(error)[:300]}"
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    def us(key):
        return f"{row[key]:.1f}" if key in row else ("failed" if f"{key}_error" in row else "-")

    agree = {True: "yes", False: "NO", None: "-"}[row.get("bit_for_bit")]
    nodes = ", ".join(f"{n} {kind}" for kind, n in row.get("graph_nodes", {}).items()) or "-"
    line = (
        f"| {row['job']} | {agree} | {us('eager_us')} | {us('graphed_us')} | {us('torch_eager_us')} | "
        f"{us('torch_graphed_us')} | {nodes} | {row['target']} |"
    )
    errors = [f"{key}: {value}" for key, value in row.items() if key == "error" or key.endswith("_error")]
    return line + "".join(f"\n  {error}" for error in errors)
