"""Benchmark nn_gpu against the notebook's NumPy code and PyTorch: `python scripts/ladder.py --help`.

On this project's CPU machines, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command only.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nn_gpu.bench.ladder import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
