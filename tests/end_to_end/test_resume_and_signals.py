"""Long runs made safe: resume equals never stopping, Ctrl-C, kill -9, damaged checkpoints, divergence."""

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_csv

from nn_gpu import plots
from nn_gpu import run as run_module
from nn_gpu.checkpoint import load_checkpoint, load_model
from nn_gpu.commands.train import train_main
from nn_gpu.outputs import LOCK

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.csv"
    return synthetic_csv(path, 600, seed=12)


def run_args(train_csv, out, *extra):
    return [
        "--device", "cpu", "--data", str(train_csv), "--dev-size", "100", "--hidden", "16,12", "--dtype", "float64",
        "--batch-size", "64", "--epochs", "4", "--momentum", "0.9", "--weight-decay", "1e-4", "--lr-schedule", "cosine",
        "--alpha", "0.05", "--log-interval", "5", "--quiet", "--output-dir", str(out), *extra,
    ]  # fmt: skip


def model_arrays(path):
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def test_resume_after_ctrl_c_ends_bit_identical_to_an_uninterrupted_run(tmp_path, train_csv, monkeypatch, capsys):
    assert train_main(run_args(train_csv, tmp_path / "whole")) == 0
    real_train = run_module.train

    def train_then_ctrl_c(*args, hooks, **kwargs):
        steps = []

        def step(count, samples):
            hooks.on_steps(count, samples)
            steps.extend([1] * count)
            if len(steps) == 17:  # mid-epoch (8 batches an epoch), between two logs
                os.kill(os.getpid(), signal.SIGINT)

        return real_train(*args, hooks=dataclasses.replace(hooks, on_steps=step), **kwargs)

    monkeypatch.setattr(run_module, "train", train_then_ctrl_c)
    assert train_main(run_args(train_csv, tmp_path / "stopped")) == 130
    err = capsys.readouterr().err
    checkpoint = tmp_path / "stopped" / "checkpoint.npz"
    assert err == (  # not an error: no "error:"
        f"stopped at iteration 17; checkpoint saved to {checkpoint}; resume with train.py --resume {checkpoint.parent}\n"
    )
    assert load_checkpoint(checkpoint)[3].iteration == 17
    assert not (tmp_path / "stopped" / "model.npz").exists()

    monkeypatch.setattr(run_module, "train", real_train)
    assert train_main(["--device", "cpu", "--quiet", "--resume", str(tmp_path / "stopped")]) == 0
    whole, resumed = model_arrays(tmp_path / "whole" / "model.npz"), model_arrays(tmp_path / "stopped" / "model.npz")
    for key in whole:
        np.testing.assert_array_equal(resumed[key], whole[key], err_msg=key)  # bit for bit
    metrics = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "stopped")]
    assert [h["train_loss"] for h in metrics[1]["history"]] == [h["train_loss"] for h in metrics[0]["history"]]
    assert metrics[1]["final"] == metrics[0]["final"]


def start(args):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def long_run(train_csv, out):
    return run_args(train_csv, out, "--epochs", "100000", "--save-every", "1", "--hidden", "64")


def wait_for(path, process, after_ns=0, seconds=30):
    """Wait until `process` has written `path` (later than after_ns, by modification time)."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.stat().st_mtime_ns > after_ns):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


def test_sigint_from_outside_saves_and_exits_130(tmp_path, train_csv):
    process = start(long_run(train_csv, tmp_path))
    wait_for(tmp_path / "checkpoint.npz", process)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert err.startswith("stopped at iteration ") and err.count("\n") == 1
    assert load_checkpoint(tmp_path / "checkpoint.npz")[3].iteration == int(err.split()[3].rstrip(";"))


def test_kill_9_at_random_moments_never_breaks_the_checkpoint(tmp_path, train_csv):
    rng = random.Random(0)
    checkpoint = tmp_path / "checkpoint.npz"
    loaded = []
    for _ in range(8):  # a fresh run, then resumes: kill -9 must leave neither a broken file nor a held lock
        before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else 0
        process = start(["--device", "cpu", "--resume", tmp_path] if before else long_run(train_csv, tmp_path))
        wait_for(checkpoint, process, after_ns=before)  # this run is saving now
        time.sleep(rng.uniform(0.0, 0.4))  # saves happen every iteration: land anywhere in one
        process.kill()
        process.communicate()
        loaded.append(load_checkpoint(checkpoint)[3].iteration)  # raises if damaged
    assert len(loaded) == 8 and max(loaded) > 0
    leftovers = {p.name for p in tmp_path.iterdir()} - {"checkpoint.npz", ".checkpoint.npz.tmp", "metrics.jsonl", LOCK}
    assert leftovers == set()  # at most the one fixed temporary name, replaced by the next save


SETTINGS_DAMAGE = {  # a saved setting missing, of the wrong type, out of range, or at odds with the network
    "no-batch-size": ("batch_size", None),
    "zero-batch": ("batch_size", 0),
    "text-alpha": ("alpha", "fast"),
    "negative-momentum": ("momentum", -1),
    "hidden-mismatch": ("hidden", [16, 13]),
    "seed-list": ("seed", [1, 2]),
}


@pytest.mark.parametrize(
    "damage",
    ["truncate", "pickle", "object-array", "extra-key", "wrong-shape", "bad-json", *SETTINGS_DAMAGE],
)
def test_damaged_checkpoint_is_refused_with_one_line(tmp_path, train_csv, damage, capsys):
    out = tmp_path / "run"
    assert train_main(run_args(train_csv, out, "--save-every", "10", "--epochs", "1")) == 0
    path = out / "checkpoint.npz"
    arrays = model_arrays(path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "pickle":
        with open(path, "wb") as f:
            np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        if damage == "object-array":
            arrays["velocity"] = np.array([object()], dtype=object)
        elif damage == "extra-key":
            arrays["surprise"] = np.zeros(2)
        elif damage == "wrong-shape":
            arrays["W2"] = arrays["W2"][:, :3]
        elif damage == "bad-json":
            arrays["progress"] = np.array("{not json")
        else:
            config = json.loads(str(arrays["config"]))
            name, value = SETTINGS_DAMAGE[damage]
            config[name] = value
            if value is None:
                del config[name]
            arrays["config"] = np.array(json.dumps(config))
        with open(path, "wb") as f:
            np.savez(f, **arrays, allow_pickle=damage == "object-array")
    capsys.readouterr()
    assert train_main(["--device", "cpu", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1


def test_divergence_stops_with_exit_3_and_keeps_the_last_good_checkpoint(tmp_path, train_csv, capsys):
    args = run_args(train_csv, tmp_path, "--alpha", "1000", "--momentum", "0", "--lr-schedule", "constant")
    args += ["--save-every", "1", "--log-interval", "1", "--hidden", "32"]
    assert train_main(args) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: training diverged at iteration ") and "learning rate 1000" in err
    assert "lower --alpha (try 100)" in err and err.count("\n") == 1
    iteration = int(err.split("iteration ")[1].split(":")[0])
    assert f"the last good checkpoint, from iteration {iteration - 1}, is {tmp_path / 'checkpoint.npz'}" in err
    arch, params, *_ = load_checkpoint(tmp_path / "checkpoint.npz")
    assert all(np.isfinite(p).all() for p in params)
    assert not (tmp_path / "model.npz").exists()


def test_resume_refuses_new_settings(tmp_path, capsys):
    assert train_main(["--resume", str(tmp_path), "--iterations", "900", "--alpha", "0.5"]) == 2
    assert capsys.readouterr().err == (  # the length may change (it extends the run), nothing else
        "error: --resume continues a run with the settings saved in it; drop --alpha\n"
    )
    assert train_main(["--resume", str(tmp_path), "--early-stopping", "3", "--batch-size", "8"]) == 2
    assert capsys.readouterr().err == (
        "error: --resume continues a run with the settings saved in it; drop --batch-size, --early-stopping\n"
    )


def test_model_file_is_not_a_checkpoint_and_back(tmp_path, train_csv):
    out = tmp_path / "run"
    assert train_main(run_args(train_csv, out, "--save-every", "100", "--epochs", "1")) == 0
    load_model(out / "model.npz")
    with pytest.raises(Exception, match="missing \\['best', 'config', 'progress', 'velocity'\\]"):
        load_checkpoint(out / "model.npz")
    with pytest.raises(Exception, match="unexpected \\['best', 'config', 'progress', 'velocity'\\]"):
        load_model(out / "checkpoint.npz")


def test_ctrl_c_after_the_last_iteration_is_not_swallowed(tmp_path, train_csv, monkeypatch, capsys):
    real_train = run_module.train

    def train_then_ctrl_c(*args, **kwargs):  # the signal lands in the final evaluation, after the loop
        progress = real_train(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return progress

    monkeypatch.setattr(run_module, "train", train_then_ctrl_c)
    out = tmp_path / "run"
    assert train_main(run_args(train_csv, out)) == 130
    checkpoint = out / "checkpoint.npz"
    assert capsys.readouterr().err == (
        f"stopped after the last iteration, 32; checkpoint saved to {checkpoint}; finish with train.py --resume {out}\n"
    )
    assert load_checkpoint(checkpoint)[3].iteration == 32 and not (out / "model.npz").exists()
    monkeypatch.setattr(run_module, "train", real_train)
    assert train_main(["--device", "cpu", "--quiet", "--resume", str(out)]) == 0
    assert train_main(run_args(train_csv, tmp_path / "whole")) == 0
    for key, value in model_arrays(tmp_path / "whole" / "model.npz").items():
        np.testing.assert_array_equal(model_arrays(out / "model.npz")[key], value, err_msg=key)


def test_ctrl_c_while_drawing_stops_the_pictures_and_keeps_the_model(tmp_path, train_csv, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    real_curves = plots.training_curves

    def curves_then_ctrl_c(*args):
        fig = real_curves(*args)
        os.kill(os.getpid(), signal.SIGINT)
        return fig

    monkeypatch.setattr(plots, "training_curves", curves_then_ctrl_c)
    out = tmp_path / "run"
    assert train_main(run_args(train_csv, out)) == 130
    assert capsys.readouterr().err == (
        f"stopped while drawing the pictures; the models and metrics.json are saved in {out}\n"
    )
    load_model(out / "model.npz")
    load_model(out / "best_model.npz")
    assert (out / "training_curves.png").exists() and not (out / "weights.png").exists()
