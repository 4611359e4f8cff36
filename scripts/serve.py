"""Draw a digit and watch the network think: `python scripts/serve.py --model DIR/model.npz`, then open the URL it prints."""

import sys

from launch import launch

if __name__ == "__main__":
    sys.exit(launch("nn_gpu.commands.serve", "serve_main"))
