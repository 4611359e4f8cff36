"""scripts/bench.py --quick runs and writes valid JSON, and its busy process always stops. No timing is
asserted here, ever."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import synthetic_csv

from nn_gpu.bench.accuracy import accuracy_benchmark
from nn_gpu.bench.timing import busy_core

ROOT = Path(__file__).resolve().parents[1]


def bench_main(argv):
    """scripts/bench.py's command, in this process (the script itself only launches it: test_commands runs it)."""
    from nn_gpu.commands.bench import main

    return main(argv)


@pytest.mark.slow
def test_quick_benchmark_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--device", "cpu", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["quick"] is True and "cores" in report["machine"]
    rows = {r["impl"]: r for r in report["rows"] if r["workload"] == "notebook job"}
    assert {"notebook", "nn_gpu-cpu"} <= rows.keys()
    for r in rows.values():  # each figure follows from the measured ms/step as its column says
        assert r["m"] == r["batch"] == 41000 and math.isfinite(r["ms_per_step"]) and r["ms_per_step"] > 0
        assert r["samples_per_second"] == pytest.approx(41000 / (r["ms_per_step"] / 1000), rel=1e-12)
        assert r["speedup_vs_notebook"] == pytest.approx(rows["notebook"]["ms_per_step"] / r["ms_per_step"])
        if "torch-cpu" in rows:
            assert r["speedup_vs_torch"] == pytest.approx(rows["torch-cpu"]["ms_per_step"] / r["ms_per_step"])
    # nn_gpu scales pixels block by block: a step allocates a block's A0 (at most 16 at once, one per
    # partial sum) and never a float copy of X; the notebook's X is float64 from the start.
    block, whole = 1024 * 784 * 4 / 1e6, 41000 * 784 * 4 / 1e6
    assert block <= rows["nn_gpu-cpu"]["step_peak_mb"] < whole
    load = [r for r in report["rows"] if r["workload"] == "load train.csv"]
    assert load and load[0]["rows"] == 4200 and load[0]["seconds"] > 0
    assert 4200 * 785 * 2 / 1e6 < load[0]["file_mb"] < 4200 * 785 * 4 / 1e6  # a value and a comma per cell
    assert "| notebook job | nn_gpu-cpu | 41,000 |" in result.stdout
    under_load = [r for r in report["rows"] if r["workload"].startswith("under load: ")]
    assert {(r["workload"], tuple(r["hidden"])) for r in under_load} == {
        ("under load: notebook job", (10,)),
        ("under load: mini-batch", (10,)),
        ("under load: mini-batch", (128,)),
    }
    idle = {(r["workload"], r["impl"], tuple(r["hidden"])): r["ms_per_step"] for r in report["rows"] if "batch" in r}
    for r in under_load:  # each compared with its own implementation's idle row of the same workload
        key = (r["workload"].removeprefix("under load: "), r["impl"], tuple(r["hidden"]))
        assert r["speed_vs_idle"] == pytest.approx(idle[key] / r["ms_per_step"])
    assert "Under load: another process spinning on one core" in result.stdout


@pytest.mark.slow
def test_perf_times_each_job_and_says_what_it_could_not(tmp_path, capsys, monkeypatch):
    """bench.py --perf on the CPU: the eager step of each job, timed; on a card the graphed one, its
    agreement with the eager one and PyTorch's too (gpu_check.sh's perf stage). A job that fails is a row
    that says so, the others still run, and the exit code is 1."""
    from nn_gpu.bench import perf

    assert bench_main(["--perf", "--quick", "--device", "cpu", "--json", str(tmp_path / "perf.json")]) == 0
    rows = json.loads((tmp_path / "perf.json").read_text())["rows"]
    assert [r["job"] for r in rows] == list(perf.JOBS)
    assert all(r["eager_us"] > 0 and r["bit_for_bit"] is None and "graphed_us" not in r for r in rows)
    out = capsys.readouterr().out
    assert "| notebook job | - | " in out and "| <= 40 us |" in out
    monkeypatch.setitem(perf.JOBS, "best recipe", ((10,), 128, "rmsprop", {}, 1e-3, None, "constant"))
    assert bench_main(["--perf", "--quick", "--device", "cpu"]) == 1
    assert "error: ValueError: unknown optimizer 'rmsprop'" in capsys.readouterr().out


@pytest.mark.slow
def test_accuracy_comparison_runs_on_the_data_given_and_refuses_bad_data(tmp_path, capsys):
    synthetic_csv(tmp_path / "train.csv", 1300, seed=4)
    rows = accuracy_benchmark([tmp_path / "train.csv"], seeds=(0, 1))
    nn_gpu_rows = [r for r in rows if r["impl"] == "nn_gpu-cpu"]
    assert [r["hidden"] for r in nn_gpu_rows] == [[128], [256, 128]]
    for r in nn_gpu_rows:
        assert r["data"] == f"{tmp_path / 'train.csv'} (300 train / 1,000 test)" and r["seeds"] == [0, 1]
        assert r["mean_test_accuracy"] == pytest.approx(sum(r["test_accuracies"]) / 2)
        assert min(r["test_accuracies"]) > 0.5  # ten learnable prototypes: far above chance (0.1)
    assert bench_main(["--accuracy", "--data", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing.csv'}: ")
    with pytest.raises(SystemExit):
        bench_main(["--data", "sample"])  # --data belongs to --accuracy
    assert "add --accuracy" in capsys.readouterr().err


def test_estimator_comparison_fits_each_side_on_the_same_split(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="the comparison needs scikit-learn (the dev extra)")
    from nn_gpu.bench.estimators import estimator_benchmark, speedups

    synthetic_csv(tmp_path / "train.csv", 1300, seed=4)
    rows = estimator_benchmark([str(tmp_path / "train.csv")], ["cpu"], 5, [0, 1], with_torch=False, under_load=False)
    assert [(r["solver"], r["impl"]) for r in rows] == [
        ("sgd", "sklearn-cpu"), ("sgd", "nn_gpu-cpu"), ("adam", "sklearn-cpu"), ("adam", "nn_gpu-cpu")
    ]  # fmt: skip
    for r in rows:
        assert r["train_size"] == 300 and r["epochs"] == 5 and [s["epochs"] for s in r["per_seed"]] == [5, 5]
        assert (
            r["accuracy"] == pytest.approx(sum(s["accuracy"] for s in r["per_seed"]) / 2) and r["accuracy"] > 0.3
        )  # chance: 0.1
    lines = speedups(rows)
    assert len(lines) == 2 and all("nn_gpu-cpu" in line and "less fit time than sklearn" in line for line in lines)
    assert "nn_gpu-cpu" in capsys.readouterr().out  # each row is printed as it is measured


def gone(pid: int) -> bool:
    """The process has ended (a zombie nobody has reaped yet counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def wait_until_gone(pid: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes' states in /proc")


@pytest.mark.slow
@needs_proc
def test_the_busy_process_spins_on_one_core_and_is_stopped_by_ctrl_c():
    with pytest.raises(KeyboardInterrupt):
        with busy_core() as spinner:
            time.sleep(0.5)
            assert spinner.poll() is None
            if hasattr(os, "sched_getaffinity"):
                assert os.sched_getaffinity(spinner.pid) == {min(os.sched_getaffinity(0))}
            raise KeyboardInterrupt
    assert spinner.poll() is not None


@pytest.mark.slow
@needs_proc
def test_the_busy_process_stops_by_itself_after_its_limit():
    with busy_core(limit=1) as spinner:
        assert wait_until_gone(spinner.pid), "still spinning after its limit"


@pytest.mark.slow
@needs_proc
def test_the_busy_process_stops_when_the_benchmark_is_killed():
    script = (
        "import time\n"
        "from nn_gpu.bench.timing import busy_core\n"
        "with busy_core() as spinner:\n"
        "    print(spinner.pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as benchmark:
        spinner_pid = int(benchmark.stdout.readline())
        assert not gone(spinner_pid)
        benchmark.send_signal(signal.SIGKILL)  # no finally block runs: the spinner must notice by itself
    try:
        assert wait_until_gone(spinner_pid), "the busy process outlived the benchmark"
    finally:  # never leave it spinning through the rest of the tests
        if not gone(spinner_pid):
            os.kill(spinner_pid, signal.SIGKILL)
