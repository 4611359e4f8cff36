"""A run's evaluations as they happen: DIR/metrics.jsonl, and TensorBoard event files when asked.

metrics.jsonl holds one JSON object per evaluation (nn_gpu.training's history entries), a line each,
flushed as it is written, so `tail -f DIR/metrics.jsonl` follows a run and a crashed run keeps every
line it printed (Keras' CSVLogger, Chainer's LogReport). A resumed run first writes the history
saved in its checkpoint, so the file never holds evaluations of steps that were thrown away.

With `tensorboard`, the same numbers go to DIR/tensorboard/ through tensorboardX (the optional
extra `tensorboard`), as scalars train/loss, train/accuracy, dev/loss, dev/accuracy, learning_rate
and samples_per_second against the iteration; `tensorboard --logdir DIR` shows them. A resumed run
purges the events after its checkpoint, as TensorBoard expects of a restarted run.
"""

from __future__ import annotations

import json
from pathlib import Path

from nn_gpu.errors import NNGpuError

METRICS_LOG = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_HINT = "pip install -e '.[tensorboard]'"
SCALARS = {
    "train/loss": "train_loss",
    "train/accuracy": "train_accuracy",
    "dev/loss": "dev_loss",
    "dev/accuracy": "dev_accuracy",
    "learning_rate": "learning_rate",
    "samples_per_second": "samples_per_second",
}


def tensorboard_writer_class():
    """tensorboardX's SummaryWriter, or NNGpuError saying how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise NNGpuError(f"--tensorboard needs tensorboardX, which is not installed: {TENSORBOARD_HINT}") from None
    return SummaryWriter


class MetricsLog:
    """Open metrics.jsonl in `folder`, holding `history` (the evaluations up to iteration `resumed_at`,
    the checkpoint's, or none for a new run), and a TensorBoard writer when `tensorboard`; `write(entry)`
    adds one evaluation to each; use as a context manager."""

    def __init__(self, folder: Path, history: list[dict], resumed_at: int = 0, tensorboard: bool = False):
        self.path = Path(folder) / METRICS_LOG
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        for entry in history:
            self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        self._writer = None
        if tensorboard:
            self._writer = tensorboard_writer_class()(
                str(Path(folder) / TENSORBOARD_DIR), purge_step=resumed_at + 1 if resumed_at else None
            )

    def write(self, entry: dict) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        if self._writer is not None:
            for tag, key in SCALARS.items():
                if entry.get(key) is not None:
                    self._writer.add_scalar(tag, entry[key], entry["iteration"])
            self._writer.flush()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
