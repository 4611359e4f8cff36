"""`python -m nn_gpu COMMAND [flags]`: the `nn-gpu` command (nn_gpu.commands)."""

import sys

from nn_gpu.commands import main

sys.exit(main(prog="python -m nn_gpu"))
