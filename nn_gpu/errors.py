"""The errors nn_gpu reports to a user as one line and an exit code.

The command-line tools catch `NNGpuError` and print `str(error)` alone, never a traceback,
then exit with `error.exit_code`.
"""

import sys


def one_line(message) -> str:
    """str(message) on one line: every run of whitespace, newlines included, becomes one space."""
    return " ".join(str(message).split())


def warn(text: str) -> None:
    """A warning on stderr, on its own line: the work goes on."""
    print(f"warning: {text}", file=sys.stderr)


class NNGpuError(Exception):
    """A problem the user can fix; the message is one line that says what and where."""

    exit_code = 2


class DataError(NNGpuError):
    """An input data file is missing, malformed or out of range."""


class ModelFileError(NNGpuError):
    """A model or checkpoint file is not one of ours, or is damaged."""


class DeviceError(NNGpuError):
    """The device asked for cannot be used (CuPy missing, no CUDA device, old driver, out of memory)."""
