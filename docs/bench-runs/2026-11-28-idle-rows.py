"""bench.py's idle training rows for the code at ROOT (sys.argv[1]); JSON rows to sys.argv[2].

Run alternately for two checkouts, so that both see the same machine over the same minutes."""
import json, sys
root = sys.argv[1]
sys.path.insert(0, root + "/scripts"); sys.path.insert(0, root)
import bench
rows = []
rows += bench.run_training(["cpu"], 41000, (10,), None, 10, 7, "notebook job")
rows += bench.run_training(["cpu"], 41000, (10,), 128, 100, 7, "mini-batch")
rows += bench.run_training(["cpu"], 41000, (128,), 128, 100, 7, "mini-batch")
rows += bench.run_training(["cpu"], 41000, (128,), None, 10, 7, "full batch")
rows += bench.run_training(["cpu"], 41000, (256, 128), None, 10, 7, "full batch")
json.dump({"root": root, "machine": bench.machine(), "rows": rows}, open(sys.argv[2], "w"), indent=2)
print(bench.format_table(rows))
