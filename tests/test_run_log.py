"""metrics.jsonl: each evaluation readable as soon as it is written, and a resumed run's file holding
its checkpoint's history and nothing after it."""

import json

from nn_gpu.run_log import METRICS_LOG, MetricsLog

HISTORY = [{"iteration": 10 * k, "train_loss": 1.0 / k, "dev_accuracy": None} for k in (1, 2, 3)]


def lines(folder):
    """The entries of folder's metrics.jsonl, read through a handle of its own."""
    with open(folder / METRICS_LOG, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def test_each_entry_is_readable_by_another_reader_as_soon_as_it_is_written(tmp_path):
    with MetricsLog(tmp_path, []) as log:
        assert lines(tmp_path) == []
        for k, entry in enumerate(HISTORY, start=1):
            log.write(entry)
            assert lines(tmp_path) == HISTORY[:k]  # as `tail -f` sees it, the run still going
    assert lines(tmp_path) == HISTORY


def test_a_resumed_run_rewrites_the_file_from_its_checkpoints_history(tmp_path):
    with MetricsLog(tmp_path, []) as log:  # a run that logged three evaluations, then stopped
        for entry in HISTORY:
            log.write(entry)
    resumed = {"iteration": 20, "train_loss": 0.4, "dev_accuracy": None}
    with MetricsLog(tmp_path, HISTORY[:1], resumed_at=10) as log:  # its checkpoint was from iteration 10
        assert lines(tmp_path) == HISTORY[:1]  # the evaluations after the checkpoint are gone ...
        log.write(resumed)
    assert lines(tmp_path) == [HISTORY[0], resumed]  # ... and the resumed run's follow
