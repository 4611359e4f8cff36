"""The dev-set runs that chose the longer recipes (docs/ladder.md): train.py recipes, one per line of a
file (name | flags), each run in this process; one JSON line each (dev, test, train accuracy, seconds)
appended to an output file, skipping names already there.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python docs/bench-runs/2026-12-04-dev-runs.py SPEC OUT
"""

import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from nn_gpu.commands.train import train_main

spec, out = sys.argv[1], sys.argv[2]
done = {json.loads(line)["name"] for line in open(out)} if Path(out).exists() else set()
for line in open(spec):
    if not line.strip() or line.startswith("#"):
        continue
    name, flags = (part.strip() for part in line.split("|"))
    if name in done:
        continue
    with tempfile.TemporaryDirectory() as folder:
        started = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            code = train_main([*flags.split(), "--quiet", "--output-dir", folder])
        metrics = json.loads((Path(folder) / "metrics.json").read_text()) if code == 0 else {}
    final = metrics.get("final", {})
    record = {
        "name": name,
        "flags": flags,
        "code": code,
        "dev": final.get("dev_accuracy"),
        "test": final.get("test_accuracy"),
        "train": final.get("train_accuracy"),
        "train_seconds": metrics.get("train_seconds"),
        "wall": round(time.time() - started, 1),
    }
    with open(out, "a") as output:
        output.write(json.dumps(record) + "\n")
    print(record, flush=True)
