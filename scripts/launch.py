"""How each script starts nn_gpu's command: Ctrl-C while Python is still loading the libraries (NumPy,
pandas, CuPy take a second or more) is "interrupted" and exit 130, as it is once the command runs."""

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def launch(module: str, function: str) -> int:
    """Import `module` and return its `function`() (a command's main, which handles Ctrl-C itself)."""
    try:
        main = getattr(importlib.import_module(module), function)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return main()
