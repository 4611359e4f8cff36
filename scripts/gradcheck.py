"""Check every gradient against finite differences: `python scripts/gradcheck.py [--hidden 10] [--dtype float64]`."""

import sys

from launch import launch

if __name__ == "__main__":
    sys.exit(launch("nn_gpu.commands.gradcheck", "gradcheck_main"))
