"""Today's code (commit 40f17da), the benchmark's rows, idle or with another process spinning on one core."""
import json, os, subprocess, sys, time
sys.path.insert(0, "/tmp/old/scripts"); sys.path.insert(0, "/tmp/old")
import bench
load = sys.argv[1] == "load"
spinner = None
if load:
    spinner = subprocess.Popen([sys.executable, "-c", "import os,time\nos.sched_setaffinity(0,{0})\nt=time.time()+900\nwhile time.time()<t: sum(range(10000))"])
try:
    rows = []
    rows += bench.run_training(["cpu"], 41000, (10,), None, 10, 7, "notebook job")
    rows += bench.run_training(["cpu"], 41000, (10,), 128, 100, 7, "mini-batch")
    rows += bench.run_training(["cpu"], 41000, (128,), 128, 100, 7, "mini-batch")
    if not load:
        rows += bench.run_training(["cpu"], 41000, (128,), None, 10, 7, "full batch")
        rows += bench.run_training(["cpu"], 41000, (256, 128), None, 10, 7, "full batch")
finally:
    if spinner:
        spinner.terminate(); spinner.wait()
print(bench.format_table(rows))
json.dump({"machine": bench.machine(), "load": load, "rows": rows}, open(sys.argv[2], "w"), indent=2)
