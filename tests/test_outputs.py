"""The run folder: one run at a time, checked before training, never mixed with another run."""

import datetime
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, synthetic_csv

from nn_gpu import outputs, report
from nn_gpu import run as run_module
from nn_gpu.checkpoint import load_checkpoint, load_model
from nn_gpu.commands.train import train_main
from nn_gpu.errors import NNGpuError
from nn_gpu.outputs import LOCK, RUN_FILES, claim, new_run_folder


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.csv"
    return synthetic_csv(path, 300, seed=3)


def args(train_csv, out, *extra):
    return ["--device", "cpu", "--data", str(train_csv), "--dev-size", "50", "--iterations", "5", "--quiet",
            "--output-dir", str(out), *map(str, extra)]  # fmt: skip


def test_a_folder_is_held_by_one_claim_and_freed_on_release(tmp_path):
    with claim(tmp_path / "run") as run:
        assert (run.path / LOCK).read_text() == f"{os.getpid()}\n"
        with pytest.raises(NNGpuError, match=f"in use by another training run \\(PID {os.getpid()}\\)"):
            claim(tmp_path / "run")  # flock: a second open file conflicts, even in the same process
    assert not (tmp_path / "run" / LOCK).exists()
    claim(tmp_path / "run").release()


def open_descriptors() -> int:
    """How many file descriptors this process has open."""
    if not os.path.isdir("/dev/fd"):
        pytest.skip("no /dev/fd to count open descriptors in")
    return len(os.listdir("/dev/fd"))


def test_a_released_claim_closes_its_lock_and_a_refused_one_leaves_the_folder_free(tmp_path):
    before = open_descriptors()
    for _ in range(3):
        with claim(tmp_path / "run"):
            assert open_descriptors() == before + 1  # the lock file
        assert open_descriptors() == before
    (tmp_path / "run" / "model.npz").write_bytes(b"")
    with pytest.raises(NNGpuError, match="holds a run already"):
        claim(tmp_path / "run")
    assert open_descriptors() == before and not (tmp_path / "run" / LOCK).exists()
    claim(tmp_path / "run", overwrite=True).release()  # not "in use": the refused claim let go of its lock
    assert open_descriptors() == before and not (tmp_path / "run" / "model.npz").exists()


def test_default_folder_names_never_collide(tmp_path, monkeypatch):
    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 11, 28, 12, 0, 0)

    monkeypatch.setattr(outputs.datetime, "datetime", Frozen)
    folders = [new_run_folder(tmp_path / "runs") for _ in range(3)]
    assert [f.name for f in folders] == ["20261128-120000", "20261128-120000-2", "20261128-120000-3"]


def _start(*arguments):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *map(str, arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path, process, seconds=60):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_a_second_run_is_refused_and_a_scheduler_stop_saves_a_checkpoint(tmp_path, train_csv, stop):
    out = tmp_path / "run"
    first = _start(*args(train_csv, out, "--iterations", 10**7, "--save-every", 1, "--hidden", 64))
    _wait_for(out / "checkpoint.npz", first)
    second = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args(train_csv, out)], capture_output=True, text=True
    )
    assert second.returncode == 2
    assert second.stderr == (
        f"error: {out}: in use by another training run (PID {first.pid}); wait for it or choose another --output-dir\n"
    )
    first.send_signal(stop)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 128 + stop, err
    name = signal.Signals(stop).name
    assert err.startswith(f"stopped by {name} at iteration ") and err.count("\n") == 1  # not an error
    iteration = int(err.split("iteration ")[1].split(";")[0])
    assert f"checkpoint saved to {out / 'checkpoint.npz'}; resume with train.py --resume {out}" in err
    assert load_checkpoint(out / "checkpoint.npz")[3].iteration == iteration
    assert not (out / LOCK).exists() and not (out / "model.npz").exists()


class Usage:  # what shutil.disk_usage says of a nearly full disk
    free = 100_000


def test_an_unusable_output_folder_is_refused_before_training(tmp_path, train_csv, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    assert train_main(args(train_csv, tmp_path / "file")) == 2
    assert (
        capsys.readouterr().err == f"error: {tmp_path / 'file'}: is a file, not a folder; choose another --output-dir\n"
    )

    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: Usage())
    assert train_main(args(train_csv, tmp_path / "full")) == 2
    captured = capsys.readouterr()
    assert "data:" not in captured.out  # refused before the data were split, let alone trained on
    assert captured.err.startswith(
        f"error: {tmp_path / 'full'}: no space left on device: 0.1 MB free, the run needs about "
    )
    assert not (tmp_path / "full").exists()  # the folder this run made is gone again, lock and all
    (tmp_path / "yours").mkdir()
    assert train_main(args(train_csv, tmp_path / "yours")) == 2
    assert os.listdir(tmp_path / "yours") == []  # a folder that was there before stays, without the lock
    monkeypatch.chdir(tmp_path)
    assert train_main(args(train_csv, tmp_path / "x")[:-2]) == 2  # the default runs/<date-time>
    assert os.listdir(tmp_path / "runs") == []
    capsys.readouterr()


def test_a_checkpoint_that_cannot_be_saved_says_the_last_one_is_intact(tmp_path, train_csv, capsys, monkeypatch):
    saved, real = [], run_module.save_checkpoint

    def full_at_third(path, *rest):
        if len(saved) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path) + ".tmp")
        real(path, *rest)
        saved.append(rest[4].iteration)

    monkeypatch.setattr(run_module, "save_checkpoint", full_at_third)
    out = tmp_path / "run"
    assert train_main(args(train_csv, out, "--save-every", "2", "--iterations", "8")) == 2
    assert capsys.readouterr().err == (
        f"error: {out / 'checkpoint.npz'}: cannot save the checkpoint of iteration 6 (no space left on device); "
        f"the checkpoint of iteration 4 is intact; free some space and resume with train.py --resume {out}\n"
    )
    assert load_checkpoint(out / "checkpoint.npz").progress.iteration == 4
    saved.clear()
    saved.extend([0, 0])
    assert train_main(args(train_csv, tmp_path / "first", "--save-every", "2")) == 2
    assert "no checkpoint was saved before it; free some space and train again" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_training(tmp_path, train_csv, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    assert train_main(args(train_csv, folder)) == 2
    assert capsys.readouterr().err == (
        f"error: {folder}: cannot write there (Permission denied); choose another --output-dir\n"
    )


def test_a_failed_final_write_says_what_was_saved_and_where(tmp_path, train_csv, capsys, monkeypatch):
    real_save = report.save_model

    def disk_full_in_run_folders(path, *rest):
        if "nn_gpu-rescue-" not in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(path, *rest)

    monkeypatch.setattr(report, "save_model", disk_full_in_run_folders)
    assert train_main(args(train_csv, tmp_path / "a")) == 2
    err = capsys.readouterr().err
    prefix = f"error: {tmp_path / 'a' / 'model.npz'}: No space left on device; the best weights were saved to "
    assert err.startswith(prefix) and err.endswith("/model.npz instead\n"), err
    best, _, _, _, _, _, _, _, rescued, _ = err.removeprefix(prefix).split()
    assert best == os.path.join(os.path.dirname(rescued), "best_model.npz")
    for path in (best, rescued):  # both models, whole
        assert load_model(path)[0].hidden == (10,)
        os.unlink(path)
    os.rmdir(os.path.dirname(rescued))

    monkeypatch.setattr(report.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "no" / "such" / "folder"))
    assert train_main(args(train_csv, tmp_path / "c")) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {tmp_path / 'c' / 'model.npz'}: No space left on device; the trained model could not be saved anywhere ("
    )

    monkeypatch.setattr(report, "save_model", real_save)
    real_write = report.write_text_atomically

    def metrics_fail(path, text):
        if path.name == "metrics.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, text)

    monkeypatch.setattr(report, "write_text_atomically", metrics_fail)
    assert train_main(args(train_csv, tmp_path / "b")) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'b' / 'metrics.json'}: No space left on device; "
        f"saved: {tmp_path / 'b' / 'model.npz'}, {tmp_path / 'b' / 'best_model.npz'}\n"
    )
    load_model(tmp_path / "b" / "model.npz")


@pytest.mark.slow
def test_a_folder_holding_a_run_is_refused_unless_overwrite_or_resume(tmp_path, train_csv, capsys):
    out = tmp_path / "run"
    assert train_main(args(train_csv, out, "--save-every", 5, "--tensorboard", "--augment", "affine")) == 0
    before = {p.name: p.read_bytes() if p.is_file() else sorted(os.listdir(p)) for p in out.iterdir()}
    assert set(before) == set(RUN_FILES)  # every file a run writes, and no lock left behind
    capsys.readouterr()

    assert train_main(args(train_csv, out, "--seed", 1)) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {out}: holds a run already ({', '.join(RUN_FILES)}); add --overwrite to replace it, "
        f"--resume {out} to continue it, or choose another --output-dir\n"
    )
    assert {p.name: p.read_bytes() if p.is_file() else sorted(os.listdir(p)) for p in out.iterdir()} == before

    assert train_main(args(train_csv, out, "--seed", 1, "--overwrite")) == 0
    assert load_checkpoint(out / "checkpoint.npz").config.seed == 1  # the new run's own: --resume cannot mix runs
    assert json.loads((out / "metrics.json").read_text())["seed"] == 1
    assert set(os.listdir(out)) == set(RUN_FILES) - {
        "tensorboard",
        "augmentations.png",
    }  # the old run's extras are gone

    assert train_main(["--device", "cpu", "--resume", str(out), "--overwrite"]) == 2
    assert capsys.readouterr().err == "error: --overwrite replaces a run and --resume continues one: choose one\n"
