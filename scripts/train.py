"""Train the digit network: `python scripts/train.py --help` lists the flags."""

import sys

from launch import launch

if __name__ == "__main__":
    sys.exit(launch("nn_gpu.commands.train", "train_main"))
