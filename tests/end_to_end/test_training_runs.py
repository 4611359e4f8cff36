"""The training loop practitioners expect: epochs of mini-batches, the best model kept, early stopping,
metrics streamed as they happen, runs extended with --resume, and Ctrl-C as a stop, not an error."""

import json
import math
import struct
import sys

import numpy as np
import pytest
from helpers import synthetic_csv, train_in_process

from nn_gpu.checkpoint import load_checkpoint, load_model
from nn_gpu.commands.train import train_main
from nn_gpu.data import load_dataset, rows_to_device, split_dev
from nn_gpu.device import cpu_device
from nn_gpu.model import Network
from nn_gpu.report import LOG_LEGEND
from nn_gpu.training import EPOCH_BATCH_SIZE, TrainingPlan


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory):
    return synthetic_csv(tmp_path_factory.mktemp("data") / "train.csv", 700, seed=3)


def run(train_csv, out, *flags):
    return train_in_process(train_csv, out, *flags)


def metrics(out):
    return json.loads((out / "metrics.json").read_text())


def dev_accuracy_of(model_path, data, dev_size=100, seed=0):
    """The dev accuracy of a saved model, measured here on the dev split a run with `seed` holds out."""
    _, dev = split_dev(load_dataset(data), dev_size, np.random.default_rng(seed))
    device = cpu_device()
    arch, params = load_model(model_path)
    net = Network(arch, device, params)
    return net.evaluate(rows_to_device(dev.rows, device, arch.dtype), dev.labels.astype(np.int32))[1]


def test_epochs_without_a_batch_size_are_passes_of_mini_batches(train_csv, tmp_path, capsys):
    assert run(train_csv, tmp_path / "e", "--epochs", 3) == 0
    out = capsys.readouterr().out
    batches = math.ceil(600 / EPOCH_BATCH_SIZE)
    assert (
        f"training: 3 epochs of {batches} mini-batches of {EPOCH_BATCH_SIZE} (the default with --epochs; "
        "--batch-size N to change it), evaluated once an epoch\n"
    ) in out
    m = metrics(tmp_path / "e")
    assert (m["batch_size"], m["iterations"]) == (EPOCH_BATCH_SIZE, 3 * batches)
    assert [h["iteration"] for h in m["history"]] == [batches, 2 * batches, 3 * batches]  # once an epoch
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]
    lines = out.splitlines()
    legend = lines.index(LOG_LEGEND)
    assert lines[legend + 1].startswith(f"epoch    1  (iteration {batches:>6})  train loss ")
    assert lines[legend + 3].startswith(f"epoch    3  (iteration {3 * batches:>6})  train loss ")

    assert run(train_csv, tmp_path / "n", "--iterations", 4) == 0  # by iterations: the notebook's full batch
    assert (
        "training: 4 full-batch gradient steps on all 600 images, evaluated every 10 steps\n" in capsys.readouterr().out
    )
    assert metrics(tmp_path / "n")["batch_size"] is None


def test_the_best_model_is_kept_and_its_dev_accuracy_is_the_one_printed(train_csv, tmp_path, capsys):
    # Many evaluations at a high learning rate: the dev accuracy goes up and down, so last != best.
    assert run(train_csv, tmp_path, "--batch-size", 8, "--iterations", 300, "--alpha", 0.5, "--log-interval", 5) == 0
    out = capsys.readouterr().out
    m = metrics(tmp_path)
    dev = [h["dev_accuracy"] for h in m["history"]]
    best = int(np.argmax(dev))  # the first of the best
    assert m["best"] == {"iteration": m["history"][best]["iteration"], "dev_accuracy": dev[best]}
    assert dev[best] > m["final"]["dev_accuracy"]  # this run ends below its best: the two files differ
    printed = f"best dev accuracy {100 * dev[best]:.2f}% at iteration {m['best']['iteration']}: best_model.npz holds"
    assert printed in out
    assert dev_accuracy_of(tmp_path / "best_model.npz", train_csv) == dev[best]  # the very weights, measured again
    assert dev_accuracy_of(tmp_path / "model.npz", train_csv) == m["final"]["dev_accuracy"]
    assert f"predict with: predict.py --model {tmp_path / 'best_model.npz'} --data FILE --out submission.csv\n" in out


def test_early_stopping_stops_after_n_evaluations_without_a_better_dev_accuracy(train_csv, tmp_path, capsys):
    flags = ["--batch-size", 8, "--iterations", 3000, "--alpha", 0.05, "--log-interval", 5]  # ups and downs
    assert run(train_csv, tmp_path / "all", *flags) == 0
    assert run(train_csv, tmp_path / "stop", *flags, "--early-stopping", 4) == 0
    whole, stopped = metrics(tmp_path / "all"), metrics(tmp_path / "stop")
    # Where a hand count over the uninterrupted run's history says it must stop: 4 evaluations after a best.
    best, waited, end, setbacks = -1.0, 0, None, 0
    for k, entry in enumerate(whole["history"]):
        if entry["dev_accuracy"] > best:
            best, setbacks = entry["dev_accuracy"], setbacks + (waited > 0)  # the count starts again after a setback
            waited = 0
        else:
            waited += 1
        if waited == 4:
            end = k
            break
    assert end is not None, "the uninterrupted run never went 4 evaluations without a better dev accuracy"
    assert setbacks, "no better dev accuracy came after a worse one: the count was never reset"
    assert stopped["history"] == [dict(h, samples_per_second=s["samples_per_second"])
                                  for h, s in zip(whole["history"][: end + 1], stopped["history"])]  # fmt: skip
    assert len(stopped["history"]) == end + 1
    assert (stopped["iterations"], stopped["planned_iterations"]) == (whole["history"][end]["iteration"], 3000)
    assert stopped["stopped_early"] and stopped["best"]["dev_accuracy"] == best
    assert "(stopped early: no better dev accuracy in 4 evaluations)" in capsys.readouterr().out
    assert dev_accuracy_of(tmp_path / "stop" / "best_model.npz", train_csv) == best

    assert run(train_csv, tmp_path / "nodev", "--dev-size", 0, "--early-stopping", 3) == 2
    assert capsys.readouterr().err == "error: --early-stopping needs a dev set to watch: give --dev-size N above 0\n"


def test_metrics_jsonl_holds_each_evaluation_as_written(train_csv, tmp_path):
    assert run(train_csv, tmp_path, "--epochs", 2, "--batch-size", 50, "--log-interval", 4, "--quiet") == 0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == metrics(tmp_path)["history"]
    assert len(lines) == 6  # 24 steps, every 4


def tensorboard_scalars(folder):
    """{tag: [(step, value)]} read from the TFRecord event files in `folder` (length, crc, Event, crc)."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        position = 0
        while position < len(data):
            (length,) = struct.unpack("<Q", data[position : position + 8])
            event = event_pb2.Event.FromString(data[position + 12 : position + 12 + length])
            position += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_event_files_hold_the_history(train_csv, tmp_path):
    pytest.importorskip("tensorboardX", reason="tensorboardX is in the 'tensorboard' extra")
    assert run(train_csv, tmp_path, "--iterations", 20, "--log-interval", 5, "--quiet", "--tensorboard") == 0
    scalars = tensorboard_scalars(tmp_path / "tensorboard")
    history = metrics(tmp_path)["history"]
    for tag, key in (
        ("train/loss", "train_loss"),
        ("dev/accuracy", "dev_accuracy"),
        ("learning_rate", "learning_rate"),
    ):
        assert scalars[tag] == [(h["iteration"], pytest.approx(h[key], rel=1e-6)) for h in history], tag


def test_tensorboard_without_tensorboardx_is_refused_before_training(train_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    assert run(train_csv, tmp_path / "run", "--tensorboard") == 2
    assert capsys.readouterr().err == (
        "error: --tensorboard needs tensorboardX, which is not installed: pip install -e '.[tensorboard]'\n"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("unit, short, long", [("epochs", 2, 5), ("iterations", 30, 75)])
def test_resume_extends_a_finished_run_bit_identically(train_csv, tmp_path, capsys, unit, short, long):
    flags = ["--batch-size", 40, "--momentum", 0.9, "--quiet", "--log-interval", 5]
    assert run(train_csv, tmp_path / "long", *flags, f"--{unit}", long) == 0
    assert run(train_csv, tmp_path / "short", *flags, f"--{unit}", short) == 0
    assert train_main(["--device", "cpu", "--quiet", "--resume", str(tmp_path / "short"), f"--{unit}", str(long)]) == 0
    for name in ("model.npz", "best_model.npz"):
        for a, b in zip(load_model(tmp_path / "long" / name)[1], load_model(tmp_path / "short" / name)[1]):
            np.testing.assert_array_equal(a, b, err_msg=name)  # bit for bit
    extended, whole = metrics(tmp_path / "short"), metrics(tmp_path / "long")
    assert extended[unit] == long and extended["final"] == whole["final"]
    assert getattr(load_checkpoint(tmp_path / "short" / "checkpoint.npz").config, unit) == long  # the new length, saved
    other = {
        key: value for key, value in extended.items() if key not in ("history", "train_seconds", "samples_per_second")
    }
    assert other == {key: whole[key] for key in other}  # every other setting and figure as one run of `long`
    jsonl = [json.loads(line) for line in (tmp_path / "short" / "metrics.jsonl").read_text().splitlines()]
    assert jsonl == extended["history"]


def test_resume_refuses_what_cannot_be_extended_bit_identically(train_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(train_csv, out, "--epochs", 2, "--quiet") == 0
    resume = ["--device", "cpu", "--resume", str(out)]
    capsys.readouterr()
    assert train_main([*resume, "--iterations", "500"]) == 2
    assert capsys.readouterr().err == f"error: --resume {out}: the run counts epochs (2); extend it with --epochs N\n"
    assert train_main([*resume, "--epochs", "1"]) == 2
    assert (
        capsys.readouterr().err
        == f"error: --resume {out} --epochs 1: the run is 2 epochs long already; give more to extend it\n"
    )

    cosine = tmp_path / "cosine"
    assert run(train_csv, cosine, "--epochs", 2, "--lr-schedule", "cosine", "--quiet") == 0
    capsys.readouterr()
    assert train_main(["--device", "cpu", "--resume", str(cosine), "--epochs", "4"]) == 2
    assert capsys.readouterr().err == (
        f"error: --resume {cosine} --epochs 4: the cosine learning-rate schedule is laid out over the run's length, "
        "so a longer run would have taken other steps from the start; train a new run of 4 epochs\n"
    )


def test_a_file_without_labels_is_refused_first_and_before_any_folder(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, (50, 784))
    test_csv = tmp_path / "test.csv"
    test_csv.write_text(
        ",".join(f"pixel{i}" for i in range(784)) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in images)
    )
    assert train_main(["--device", "cpu", "--data", str(test_csv), "--output-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (
        f"error: {test_csv}: has no labels (no label column, or no IDX labels file beside the images); "
        "training needs labels (a Kaggle test.csv is for predict.py)\n"
    )  # not that 50 images are too few for --dev-size 1000
    assert not (tmp_path / "run").exists()


def test_the_plan_defaults_match_what_the_flags_say():
    assert TrainingPlan().batch_size is None and TrainingPlan().evaluate_every(4000) == 10  # the notebook's job
    by_epochs = TrainingPlan(epochs=3)
    assert by_epochs.batch_size == EPOCH_BATCH_SIZE and by_epochs.evaluate_every(4000) == math.ceil(4000 / 64)
    assert TrainingPlan(epochs=3, batch_size=100, log_interval=7).evaluate_every(4000) == 7
