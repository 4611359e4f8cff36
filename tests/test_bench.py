"""scripts/bench.py --quick runs and writes valid JSON, and its busy process always stops. No timing is
asserted here, ever."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
    rows = [r for r in report["rows"] if r["workload"] == "notebook job"]
    assert {"notebook", "nn_gpu-cpu"} <= {r["impl"] for r in rows}
    for r in rows:
        assert r["m"] == 41000 and r["ms_per_step"] > 0 and r["samples_per_second"] > 0
        assert r["speedup_vs_notebook"] > 0
        assert r["impl"] == "torch-cpu" or r["step_peak_mb"] > 0  # NumPy allocations are traced
    load = [r for r in report["rows"] if r["workload"] == "load train.csv"]
    assert load and load[0]["rows"] == 4200 and load[0]["seconds"] > 0
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


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


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


@needs_proc
def test_the_busy_process_spins_on_one_core_and_is_stopped_by_ctrl_c():
    bench = load_bench()
    with pytest.raises(KeyboardInterrupt):
        with bench.busy_core() as spinner:
            time.sleep(0.5)
            assert spinner.poll() is None
            if hasattr(os, "sched_getaffinity"):
                assert os.sched_getaffinity(spinner.pid) == {min(os.sched_getaffinity(0))}
            raise KeyboardInterrupt
    assert spinner.poll() is not None


@needs_proc
def test_the_busy_process_stops_by_itself_after_its_limit():
    bench = load_bench()
    with bench.busy_core(limit=1) as spinner:
        assert wait_until_gone(spinner.pid), "still spinning after its limit"


@needs_proc
def test_the_busy_process_stops_when_the_benchmark_is_killed():
    script = (
        "import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('bench', {str(ROOT / 'scripts' / 'bench.py')!r})\n"
        "bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)\n"
        "with bench.busy_core() as spinner:\n"
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
