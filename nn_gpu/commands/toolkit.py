"""What every command shares: the parser whose errors are one line, flag types checked by
nn_gpu.config's constraints, `run_main` (errors as one line and an exit code), --version, and the
flag tables of docs/cli.md."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path

from nn_gpu import __version__
from nn_gpu.augment import distortion
from nn_gpu.config import COUNT, WHOLE, Interval, Rates, Widths
from nn_gpu.device import DEVICE_CHOICES, out_of_memory_error, parse_device
from nn_gpu.errors import DeviceError, NNGpuError, one_line
from nn_gpu.training import Interrupted

MESSAGE_LIMIT = 600  # characters: a message quoting a huge cell or a long path stays readable


class Parser(argparse.ArgumentParser):
    """argparse, with a flag error as one line that points to --help instead of the whole usage."""

    def error(self, message: str):
        self.exit(2, f"error: {one_line(message)} (see {self.prog} --help)\n")


def _number(text: str, kind=float):
    """text as a `kind` (int or float), or the argparse error a user reads (not argparse's 'invalid value')."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole' if kind is int else 'a'} number, got {text!r}") from None


def number_in(interval: Interval) -> Callable[[str], float]:
    """The argparse type of a number in `interval` (nn_gpu.config): the error quotes the text typed."""

    def parse(text: str):
        value = _number(text, interval.kind)
        if not interval.holds(value):
            raise argparse.ArgumentTypeError(f"must be {interval.words()}, got {text}")
        return value

    parse.__name__ = f"number in {interval.words()}"
    return parse


def numbers_in(interval: Interval) -> Callable[[str], float | tuple]:
    """The argparse type of one number in `interval`, or of a comma list of them (a tuple: a grid's values)."""
    one = number_in(interval)

    def parse(text: str):
        values = tuple(one(part) for part in text.split(","))
        return values[0] if len(values) == 1 else values

    parse.__name__ = one.__name__
    return parse


def seed_list(text: str) -> tuple[int, ...]:
    """`--seeds`: whole numbers and ranges, comma-separated: 0-7, or 0,3,5, or 0-3,10."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seeds like 0-7 or 0,3,5, got {text!r}") from None
        if not 0 <= first <= last:
            raise argparse.ArgumentTypeError(f"seeds are whole numbers, 0 or more, a range low-high; got {text!r}")
        seeds += range(first, last + 1)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is given twice in {text!r}")
    return tuple(seeds)


positive_int = number_in(WHOLE)
non_negative_int = number_in(COUNT)


def augment_recipe(text: str) -> str:
    """`--augment`: a distortion recipe (nn_gpu.augment.distortion), like affine or shift+flip+erase."""
    try:
        distortion(text)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None
    return text


def dropout_rates(text: str) -> tuple[float, ...]:
    """`--dropout`: rates like 0.2,0.5 (input, then hidden layers), each in [0, 1)."""
    try:
        rates = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected rates like 0.2,0.5 (input, hidden), got {text!r}") from None
    if len(rates) < 2:
        raise argparse.ArgumentTypeError(
            f"give the input's rate and the hidden layers', e.g. 0,{text} for hidden units only; got {text!r}"
        )
    if not Rates().holds(rates):
        raise argparse.ArgumentTypeError(f"every rate must be at least 0 and below 1, got {text!r}")
    return rates


def widths(text: str) -> tuple[int, ...]:
    """`--hidden`: widths like 10 or 256,128."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 10 or 256,128, got {text!r}") from None
    if not Widths().holds(widths):
        raise argparse.ArgumentTypeError(f"every width must be at least 1, got {text!r}")
    return widths


def device_name(text: str) -> str:
    """`--device`: auto, cpu, gpu or gpu:N, checked here; nn_gpu.device resolves it."""
    try:
        parse_device(text)
    except DeviceError:
        raise argparse.ArgumentTypeError(f"expected {DEVICE_CHOICES}, got {text!r}") from None
    return text


def add_version(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action="version", version=f"nn_gpu {__version__}")


def say_error(message) -> None:
    """`error: message` on stderr, on one line, cut short when very long."""
    text = one_line(message)
    if len(text) > MESSAGE_LIMIT:
        text = f"{text[: MESSAGE_LIMIT - 40]} ... ({len(text):,} characters in all)"
    print(f"error: {text}", file=sys.stderr)


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run `main`, turning nn_gpu errors, unwritable outputs, exhausted memory, GPU out-of-memory and
    Ctrl-C into one line and an exit code."""
    try:
        return main(argv)
    except Interrupted as stopped:  # not an error: the user asked, and the work is saved
        print(one_line(stopped), file=sys.stderr)
        return stopped.exit_code
    except NNGpuError as error:
        say_error(error)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # an output that cannot be written: a missing folder, no permission, a full disk
        say_error(f"{error.filename}: {error.strerror or error}" if error.filename else error.strerror or error)
        return 2
    except Exception as error:  # CuPy's OutOfMemoryError (a MemoryError too in CuPy 14) gets the GPU's advice
        oom = out_of_memory_error(error)
        if oom is not None:
            say_error(oom)
            return oom.exit_code
        if isinstance(error, MemoryError):
            say_error(f"not enough memory ({error or 'the allocation failed'})")
            return 2
        raise


def flag_table(parser: argparse.ArgumentParser) -> str:
    """A command's flags as a Markdown table (flag, default, meaning) from the parser itself: what
    docs/cli.md shows, so the documentation cannot drift from --help (tests/test_docs.py compares them)."""
    rows = ["| flag | default | meaning |", "| --- | --- | --- |"]
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or action.dest in ("help", "version"):
            continue
        names = " ".join(f"`{name}`" for name in action.option_strings)
        if action.choices:
            names += " " + "\\|".join(map(str, action.choices))
        elif action.nargs != 0:
            names += f" {action.metavar or action.dest.upper()}"
        default = action.default
        shown = (
            ""
            if default is None or default is False
            else ",".join(map(str, default))
            if isinstance(default, tuple)
            else default
        )
        meaning = " ".join((action.help or "").replace("%%", "%").split()).replace("|", "\\|")
        rows.append(f"| {names} | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


FLAG_BLOCK = re.compile(r"(<!-- flags: (\w+) -->\n).*?(<!-- /flags -->)", re.S)


def flag_tables(text: str) -> str:
    """`text` (docs/cli.md) with each block between `<!-- flags: COMMAND -->` and `<!-- /flags -->`
    holding COMMAND's flag table as its parser has it now. `python -m nn_gpu.commands.toolkit
    docs/cli.md` rewrites the file so."""

    def table(match: re.Match) -> str:
        parser = getattr(importlib.import_module(f"nn_gpu.commands.{match.group(2)}"), f"{match.group(2)}_parser")()
        return f"{match.group(1)}{flag_table(parser)}{match.group(3)}"

    return FLAG_BLOCK.sub(table, text)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        path = Path(name)
        path.write_text(flag_tables(path.read_text()))
