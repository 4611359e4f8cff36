"""scripts/bench.py --quick runs and writes valid JSON. No timing is asserted here, ever."""

import json
import subprocess
import sys
from pathlib import Path

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
