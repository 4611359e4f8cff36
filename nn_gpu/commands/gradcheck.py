"""`nn-gpu gradcheck` and scripts/gradcheck.py: every gradient of a small network against centred
finite differences (nn_gpu.gradient_check), on a few images; exit 1 when one differs."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from nn_gpu.architecture import DTYPES
from nn_gpu.commands.toolkit import Parser, add_version, device_name, non_negative_int, positive_int, run_main, widths
from nn_gpu.data import load_dataset
from nn_gpu.errors import NNGpuError
from nn_gpu.gradient_check import gradcheck
from nn_gpu.model import Network


def gradcheck_parser(prog: str = "gradcheck.py") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description="Check every gradient of backpropagation against centred finite differences, on a few images.",
    )
    add_version(p)
    p.add_argument(
        "--data", default="sample", help="where the images come from: any source train.py reads (default sample)"
    )
    p.add_argument("--samples", type=positive_int, default=16, help="images in the batch (default 16)")
    p.add_argument("--hidden", type=widths, default=(10,), help="hidden layer widths, e.g. 10 or 256,128 (default 10)")
    p.add_argument("--dtype", choices=DTYPES, default="float64", help="the network's dtype (default float64)")
    p.add_argument("--device", type=device_name, default="auto", help="auto (default), cpu, gpu (card 0) or gpu:N")
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="draws the network, the images and the entries checked"
    )
    p.add_argument(
        "--entries", type=positive_int, default=200, help="entries checked per parameter, at random (default 200)"
    )
    return p


def gradcheck_command(argv: list[str] | None = None, prog: str = "gradcheck.py") -> int:
    args = gradcheck_parser(prog).parse_args(argv)
    dataset = load_dataset(args.data)
    if dataset.labels is None:
        raise NNGpuError(f"{dataset.source}: has no labels; the gradient check needs labelled images")
    rows = np.random.default_rng(args.seed).permutation(len(dataset))[: args.samples]
    net = Network.create(args.hidden, args.device, args.seed, dtype=args.dtype)
    table = gradcheck(net, dataset.rows[rows].T, dataset.labels[rows], entries=args.entries, seed=args.seed)
    print(f"gradient check: {net}, {len(rows)} images of {dataset.source}")
    print(table.to_string(index=False, formatters={"max_relative_error": "{:.2e}".format}))
    failed = table[~table["passed"]]
    if len(failed):
        verb = "differs" if len(failed) == 1 else "differ"
        print(f"FAILED: {', '.join(failed['parameter'])} {verb} from the finite differences", file=sys.stderr)
        return 1
    print(f"passed: every gradient within {table.attrs['tolerance']:.0e} of the finite differences")
    return 0


def gradcheck_main(argv: list[str] | None = None, prog: str = "gradcheck.py") -> int:
    """`python scripts/gradcheck.py [flags]` (prog: the command typed): exit 0 when every gradient passes,
    1 when one does not."""
    return run_main(lambda argv: gradcheck_command(argv, prog), argv)
