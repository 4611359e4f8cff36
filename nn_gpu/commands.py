"""`nn-gpu COMMAND [flags]` and `python -m nn_gpu COMMAND [flags]`: every command of nn_gpu in one.

    nn-gpu train ...       scripts/train.py      (nn_gpu.cli)
    nn-gpu predict ...     scripts/predict.py    (nn_gpu.predict)
    nn-gpu bench ...       scripts/bench.py      (nn_gpu.bench.command)
    nn-gpu gradcheck ...   scripts/gradcheck.py  (nn_gpu.gradient_check)
    nn-gpu serve ...       scripts/serve.py      (nn_gpu.serve)

Each command's usage lines and hints name it as typed (`nn-gpu train`), and its exit codes are the
script's. Commands are imported only when run, so `nn-gpu --version` is instant.
"""

from __future__ import annotations

import importlib
import sys

from nn_gpu import __version__

COMMANDS = {
    "train": ("nn_gpu.cli", "train_main", "train a network and write its run folder"),
    "predict": ("nn_gpu.predict", "predict_main", "predict digits with a trained model"),
    "bench": ("nn_gpu.bench.command", "main", "time nn_gpu against the notebook and PyTorch"),
    "gradcheck": ("nn_gpu.gradient_check", "gradcheck_main", "check every gradient against finite differences"),
    "serve": ("nn_gpu.serve", "serve_main", "a page to draw a digit on and watch the network think"),
}


def usage(prog: str) -> str:
    lines = [f"usage: {prog} {{{','.join(COMMANDS)}}} [flags]   ({prog} COMMAND --help for a command's flags)", ""]
    lines += [f"  {name:<10} {what}" for name, (_, _, what) in COMMANDS.items()]
    lines += ["", "  --version  print the version", "  --help     this list"]
    return "\n".join(lines)


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
    module, function, _ = COMMANDS[argv[0]]
    return getattr(importlib.import_module(module), function)(argv[1:], prog=f"{prog} {argv[0]}")
