"""Train the digit network: `python scripts/train.py --help` lists the flags."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nn_gpu.cli import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main())
