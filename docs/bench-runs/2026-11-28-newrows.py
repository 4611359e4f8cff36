"""This branch's code: bench.py's training rows, idle, then under load (bench.busy_core), as bench.py runs them."""
import json, sys
sys.path.insert(0, "/work/main/scripts"); sys.path.insert(0, "/work/main")
import bench
rows = []
rows += bench.run_training(["cpu"], 41000, (10,), None, 10, 7, "notebook job")
rows += bench.run_training(["cpu"], 41000, (10,), 128, 100, 7, "mini-batch")
rows += bench.run_training(["cpu"], 41000, (128,), 128, 100, 7, "mini-batch")
rows += bench.run_training(["cpu"], 41000, (128,), None, 10, 7, "full batch")
rows += bench.run_training(["cpu"], 41000, (256, 128), None, 10, 7, "full batch")
with bench.busy_core():
    rows += bench.run_training(["cpu"], 41000, (10,), None, 10, 7, bench.UNDER_LOAD + "notebook job")
    rows += bench.run_training(["cpu"], 41000, (10,), 128, 100, 7, bench.UNDER_LOAD + "mini-batch")
    rows += bench.run_training(["cpu"], 41000, (128,), 128, 100, 7, bench.UNDER_LOAD + "mini-batch")
bench.add_speed_under_load(rows)
print(bench.format_table(rows)); print(); print(bench.format_load_table(rows))
json.dump({"machine": bench.machine(), "rows": rows}, open(sys.argv[1], "w"), indent=2)
