"""PyTorch's training step as a speed-minded PyTorch user writes it: eager, or captured in a CUDA graph.

The graphed step follows PyTorch's own recipe for capturing a whole network (torch.cuda.graphs):
static input tensors that each step's batch is copied into, warm-up steps on a side stream before
capture, the gradients set to None before capture so that backward allocates them from the graph's
pool, and an optimiser that can be captured (Adam and AdamW with capturable=True; a schedule then
sets its learning rate, a tensor on the card, before each replay: set_learning_rate). Warm-up steps are real training steps, as
nn_gpu's eager first step is. Each batch size gets its own graph (an epoch's last, short batch too).
"""

from __future__ import annotations

import copy

from nn_gpu.averaging import WARM_UP

WARMUP_STEPS = 3  # eager steps of each batch size before its capture, as PyTorch's documentation does


def mlp(torch, sizes, rates, batch_norm: bool = False):
    """torch.nn.Sequential of Linear layers of `sizes` (n0, hidden..., C) with ReLU between them, each
    layer's input dropped at its rate of `rates` (nn_gpu.dropout.layer_rates: 0 for none); batch_norm:
    BatchNorm1d before each hidden ReLU, its shift the layer's only bias (as nn_gpu.batch_norm)."""
    layers: list = []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if l > 0:
            layers.append(torch.nn.ReLU())
        if rates[l]:
            layers.append(torch.nn.Dropout(rates[l]))
        hidden = l < len(sizes) - 2
        layers.append(torch.nn.Linear(n_in, n_out, bias=not (batch_norm and hidden)))
        if batch_norm and hidden:
            layers.append(torch.nn.BatchNorm1d(n_out))
    return torch.nn.Sequential(*layers)


class Average:
    """nn_gpu.averaging's moving average of a model's floating state (parameters, BatchNorm's running
    statistics), in `model` (a copy); update(trained) after each step."""

    def __init__(self, torch, trained, decay: float):
        self.torch, self.decay, self.t = torch, decay, 0
        self.model = copy.deepcopy(trained)

    def update(self, trained) -> None:
        self.t += 1
        keep = min(self.decay, (1 + self.t) / (WARM_UP + self.t))
        with self.torch.no_grad():
            for average, now in zip(self.model.state_dict().values(), trained.state_dict().values()):
                if average.dtype.is_floating_point:
                    average.mul_(keep).add_(now, alpha=1 - keep)


def optimizer(torch, name: str, parameters, lr: float, momentum: float, weight_decay: float, graphed: bool):
    """torch.optim's SGD, Adam or AdamW. Graphed: Adam and AdamW capturable, with their learning rate as
    a tensor on the card, which schedules set between replays."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    if not graphed:
        return kind(parameters, lr=lr, weight_decay=weight_decay)
    return kind(parameters, lr=torch.tensor(lr, device="cuda"), weight_decay=weight_decay, capturable=True)


def set_learning_rate(optimizer, lr: float) -> None:
    """The learning rate of the next step: in the tensor a captured optimiser reads, or as a number (what
    LambdaLR does between steps, written out)."""
    for group in optimizer.param_groups:
        if hasattr(group["lr"], "fill_"):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


class TorchStep:
    """step(X_batch, y_batch): zero_grad, forward, loss, backward and the optimiser's step for `model`;
    with graphed=True (on cuda), replayed from a CUDA graph per batch size after WARMUP_STEPS eager ones."""

    def __init__(self, torch, model, loss_function, optimizer, graphed: bool):
        self.torch, self.model, self.loss_function, self.optimizer = torch, model, loss_function, optimizer
        self.graphed = graphed
        self.graphs: dict[tuple, tuple] = {}  # shape -> (graph, static X, static y)
        self.warm: dict[tuple, int] = {}  # shape -> warm-up steps taken
        self.side = torch.cuda.Stream() if graphed else None

    def _eager(self, X, y) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_function(self.model(X), y).backward()
        self.optimizer.step()

    def __call__(self, X, y) -> None:
        if not self.graphed:
            self._eager(X, y)
            return
        torch, shape = self.torch, tuple(X.shape)
        if shape in self.graphs:
            graph, static_X, static_y = self.graphs[shape]
            static_X.copy_(X)
            static_y.copy_(y)
            graph.replay()
            return
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            self._eager(X, y)
        torch.cuda.current_stream().wait_stream(self.side)
        self.warm[shape] = self.warm.get(shape, 0) + 1
        if self.warm[shape] == WARMUP_STEPS:  # capture: nothing runs until the graph is replayed
            static_X, static_y = X.clone(), y.clone()
            graph = torch.cuda.CUDAGraph()
            self.optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                self.loss_function(self.model(static_X), static_y).backward()
                self.optimizer.step()
            self.graphs[shape] = (graph, static_X, static_y)
