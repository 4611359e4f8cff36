"""Check every gradient against finite differences: `python scripts/gradcheck.py [--hidden 10] [--dtype float64]`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nn_gpu.gradient_check import gradcheck_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(gradcheck_main())
