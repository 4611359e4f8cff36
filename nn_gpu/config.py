"""One run's settings, typed and checked in one place: `RunConfig`.

train.py's flags, `nn_gpu.train` and a checkpoint all hold a run's settings; `CONSTRAINTS` says once
what each may be (as scikit-learn's `_parameter_constraints` does), and `RunConfig` checks every one
when it is made, however it is made. The flags take their argparse types from the same table
(nn_gpu.commands.toolkit), and MLPClassifier checks its real parameters with the same `Interval`.
A checkpoint stores `RunConfig.to_dict()`; `RunConfig.from_dict` reads it back, older checkpoints
included (a setting added since takes its default). Display-only options (quiet, threads,
tensorboard, the weights layer drawn) are not settings of the run and are not here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from nn_gpu.architecture import DTYPES, INITS
from nn_gpu.augment import distortion
from nn_gpu.data import SAMPLE
from nn_gpu.errors import NNGpuError
from nn_gpu.optim import OPTIMIZERS, SCHEDULES
from nn_gpu.table import SCALES
from nn_gpu.training import EPOCH_BATCH_SIZE, TrainingPlan

DEFAULT_ITERATIONS = 500


class ConfigError(NNGpuError, ValueError):
    """A setting out of its range, of the wrong type, or at odds with another."""


@dataclass(frozen=True)
class Interval:
    """A number from low to high: ends says which ends belong to it ('[)': low in, high out); kind is int
    or float. Floats must be finite."""

    low: float
    high: float = math.inf
    ends: str = "[)"
    kind: type = float

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.kind is int else numbers.Real):
            return False
        if not math.isfinite(value):
            return False
        above = value >= self.low if self.ends[0] == "[" else value > self.low
        below = value <= self.high if self.ends[1] == "]" else value < self.high
        return above and below

    def words(self) -> str:
        """The range as train.py's errors say it: 'at least 1', 'a finite number above 0', ..."""
        if self.kind is int:
            return "0 or more" if self.low == 0 else f"at least {self.low}"
        if self.high == math.inf:
            return (
                f"a finite number above {self.low:g}"
                if self.ends[0] == "("
                else f"a finite number, {self.low:g} or more"
            )
        low = "at least" if self.ends[0] == "[" else "above"
        high = "at most" if self.ends[1] == "]" else "below"
        return f"{low} {self.low:g} and {high} {self.high:g}"

    def notation(self) -> str:
        """The range as scikit-learn's errors say it: 'a finite number in [0, 1)'."""
        if self.kind is int:
            return f"a whole number of at least {self.low}"
        return f"a finite number in {self.ends[0]}{self.low:g}, {self.high:g}{self.ends[1]}"


@dataclass(frozen=True)
class Choice:
    """One of a few names."""

    names: tuple[str, ...]

    def holds(self, value) -> bool:
        return value in self.names

    def words(self) -> str:
        return f"one of {', '.join(self.names)}"


@dataclass(frozen=True)
class Rates:
    """Dropout rates (input, hidden...): at least two, each in [0, 1)."""

    def holds(self, value) -> bool:
        return isinstance(value, tuple) and len(value) >= 2 and all(PROBABILITY.holds(p) for p in value)

    def words(self) -> str:
        return "rates like 0.2,0.5 (input, hidden), each at least 0 and below 1"


@dataclass(frozen=True)
class Widths:
    """Hidden layer widths: one or more whole numbers of at least 1."""

    def holds(self, value) -> bool:
        return isinstance(value, tuple) and len(value) >= 1 and all(WHOLE.holds(w) for w in value)

    def words(self) -> str:
        return "widths like 10 or 256,128, each at least 1"


@dataclass(frozen=True)
class Recipe:
    """A distortion recipe for --augment (nn_gpu.augment.distortion): "affine", "shift=3+flip+erase"."""

    def holds(self, value) -> bool:
        try:
            distortion(value)
        except (ValueError, AttributeError, TypeError):
            return False
        return True

    def words(self) -> str:
        return "a recipe like affine, affine+elastic or shift+flip+erase=0.3"


@dataclass(frozen=True)
class Switch:
    """On or off."""

    def holds(self, value) -> bool:
        return isinstance(value, bool)

    def words(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Text:
    def holds(self, value) -> bool:
        return isinstance(value, str) and value != ""

    def words(self) -> str:
        return "a name"


COUNT = Interval(0, kind=int)  # 0, 1, 2, ...
WHOLE = Interval(1, kind=int)  # 1, 2, ...
POSITIVE = Interval(0, ends="()")  # a finite number above 0
NON_NEGATIVE = Interval(0)  # a finite number, 0 or more
PROBABILITY = Interval(0, 1)  # [0, 1)

# What each setting may be; None is allowed where the tuple's second item is True.
CONSTRAINTS = {
    "data": (Text(), False),
    "label_column": (Text(), False),
    "scale": (Choice(SCALES), True),
    "dev_size": (COUNT, False),
    "seed": (COUNT, False),
    "hidden": (Widths(), False),
    "learning_rate": (POSITIVE, False),
    "iterations": (WHOLE, True),
    "epochs": (WHOLE, True),
    "init": (Choice(INITS), False),
    "dtype": (Choice(DTYPES), False),
    "batch_size": (WHOLE, True),
    "log_interval": (COUNT, True),
    "momentum": (PROBABILITY, False),
    "weight_decay": (NON_NEGATIVE, False),
    "lr_schedule": (Choice(SCHEDULES), False),
    "save_every": (COUNT, False),
    "early_stopping": (COUNT, False),
    "optimizer": (Choice(OPTIMIZERS), False),
    "dropout": (Rates(), True),
    "augment": (Recipe(), True),
    "label_smoothing": (PROBABILITY, False),
    "batch_norm": (Switch(), False),
    "average_weights": (PROBABILITY, False),
}
ADDED = (
    *("optimizer", "dropout", "augment", "label_smoothing", "label_column", "scale", "batch_norm", "average_weights"),
)  # absent from older checkpoints
RENAMED = {"alpha": "learning_rate"}  # older checkpoints' names
LENGTH = ("epochs", "iterations")  # what --resume may change: it extends the run


@dataclass(frozen=True)
class RunConfig:
    """Every setting that defines a run (train.py's flags, nn_gpu.train's keywords), checked when made.

    The length: `epochs` (passes in shuffled mini-batches of `batch_size`, 64 unless given) or
    `iterations` (steps; DEFAULT_ITERATIONS when neither is given), never both. batch_size None: the
    full training set each step, the notebook's gradient descent. The rest are described by train.py's
    --help (docs/cli.md).
    """

    data: str = SAMPLE
    label_column: str = "label"
    scale: str | None = None
    dev_size: int = 1000
    seed: int = 0
    hidden: tuple[int, ...] = (10,)
    learning_rate: float = 0.10
    iterations: int | None = None
    epochs: int | None = None
    init: str = "he"
    dtype: str = "float32"
    batch_size: int | None = None
    log_interval: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    save_every: int = 0
    early_stopping: int = 0
    optimizer: str = "sgd"
    dropout: tuple[float, ...] | None = None
    augment: str | None = None
    label_smoothing: float = 0.0
    batch_norm: bool = False
    average_weights: float = 0.0

    def __post_init__(self):
        for name, (rule, optional) in CONSTRAINTS.items():
            value = getattr(self, name)
            if not ((value is None and optional) or rule.holds(value)):
                raise ConfigError(f"{name} must be {rule.words()}, got {value!r}")
        if self.epochs is not None and self.iterations is not None:
            raise ConfigError("give epochs or iterations, not both")
        if self.epochs is None and self.iterations is None:
            object.__setattr__(self, "iterations", DEFAULT_ITERATIONS)
        if self.epochs is not None and self.batch_size is None:
            object.__setattr__(self, "batch_size", EPOCH_BATCH_SIZE)
        if self.momentum and self.optimizer != "sgd":
            raise ConfigError(f"--momentum is SGD's; --optimizer {self.optimizer} keeps its own moments: drop it")
        if self.dropout is not None and len(self.dropout) > len(self.hidden) + 1:
            raise ConfigError(
                f"--dropout: {len(self.dropout)} dropout rates for {len(self.hidden)} hidden layers: give the input's "
                "and at most one per hidden layer"
            )
        if self.early_stopping and not self.dev_size:
            raise ConfigError("--early-stopping needs a dev set to watch: give --dev-size N above 0")

    @property
    def length(self) -> tuple[str, int]:
        """("epochs", N) or ("iterations", N): what the run counts, and how many."""
        return ("epochs", self.epochs) if self.epochs is not None else ("iterations", self.iterations)

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready: tuples as lists (what a checkpoint and metrics.json store)."""
        return {name: list(v) if isinstance(v, tuple) else v for name, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, saved: dict) -> RunConfig:
        """The config of `saved` (to_dict's, or an older checkpoint's: a setting added since takes its
        default, a renamed one its new name); ConfigError when one is missing, unknown or out of range."""
        saved = {
            RENAMED[name] if name in RENAMED and RENAMED[name] not in saved else name: v for name, v in saved.items()
        }
        missing = [name for name in CONSTRAINTS if name not in saved and name not in ADDED]
        if missing:
            raise ConfigError(f"settings missing: {', '.join(missing)}")
        unknown = sorted(set(saved) - set(CONSTRAINTS))
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(unknown)}")
        lists = {name: tuple(saved[name]) for name in ("hidden", "dropout") if isinstance(saved.get(name), list)}
        return cls(**{**saved, **lists})

    def plan(self) -> TrainingPlan:
        """How nn_gpu.training.train runs it."""
        return TrainingPlan(**{field.name: getattr(self, field.name) for field in dataclasses.fields(TrainingPlan)})
