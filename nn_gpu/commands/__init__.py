"""The commands: `nn-gpu COMMAND [flags]`, `python -m nn_gpu COMMAND [flags]` and the scripts.

    nn-gpu train ...       scripts/train.py      nn_gpu/commands/train.py
    nn-gpu predict ...     scripts/predict.py    nn_gpu/commands/predict.py
    nn-gpu bench ...       scripts/bench.py      nn_gpu/commands/bench.py
    nn-gpu gradcheck ...   scripts/gradcheck.py  nn_gpu/commands/gradcheck.py
    nn-gpu serve ...       scripts/serve.py      nn_gpu/commands/serve.py

Each command's module holds its flags and its main; what they share is in toolkit.py. Each usage
line and hint names the command as typed (`nn-gpu train`), and its exit codes are the script's.
Commands are imported only when run, so `nn-gpu --version` is instant, and Ctrl-C while one is
still being imported is "interrupted" and exit 130, as it is once it runs.
"""

from __future__ import annotations

import importlib
import sys

from nn_gpu import __version__

COMMANDS = {
    "train": ("train_main", "train a network and write its run folder"),
    "predict": ("predict_main", "predict digits with a trained model"),
    "bench": ("main", "time nn_gpu against the notebook and PyTorch"),
    "gradcheck": ("gradcheck_main", "check every gradient against finite differences"),
    "serve": ("serve_main", "a page to draw a digit on and watch the network think"),
}


def usage(prog: str) -> str:
    lines = [f"usage: {prog} {{{','.join(COMMANDS)}}} [flags]   ({prog} COMMAND --help for a command's flags)", ""]
    lines += [f"  {name:<10} {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "  --version  print the version", "  --help     this list"]
    return "\n".join(lines)


def command(name: str):
    """The main function of command `name`, imported now (KeyboardInterrupt while importing passes through)."""
    return getattr(importlib.import_module(f"nn_gpu.commands.{name}"), COMMANDS[name][0])


def launch(name: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run command `name`: Ctrl-C while Python still loads the libraries (NumPy, pandas, CuPy take a
    second or more) is "interrupted" and exit 130, as it is once the command runs."""
    try:
        main = command(name)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return main(argv) if prog is None else main(argv, prog=prog)


def main(argv: list[str] | None = None, prog: str = "nn-gpu") -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(prog), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"nn_gpu {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}: choose {', '.join(COMMANDS)} (see {prog} --help)", file=sys.stderr)
        return 2
    return launch(argv[0], argv[1:], prog=f"{prog} {argv[0]}")


def train_script() -> int:
    """The nn-gpu-train console script."""
    return launch("train", prog="nn-gpu-train")


def predict_script() -> int:
    """The nn-gpu-predict console script."""
    return launch("predict", prog="nn-gpu-predict")


def gradcheck_script() -> int:
    """The nn-gpu-gradcheck console script."""
    return launch("gradcheck", prog="nn-gpu-gradcheck")


def serve_script() -> int:
    """The nn-gpu-serve console script."""
    return launch("serve", prog="nn-gpu-serve")
