"""Benchmark nn_gpu against the notebook's NumPy code and PyTorch: `python scripts/bench.py --help`.

On this project's CPU machines, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command only.
"""

import sys

from launch import launch

if __name__ == "__main__":
    sys.exit(launch("nn_gpu.commands.bench", "main"))
