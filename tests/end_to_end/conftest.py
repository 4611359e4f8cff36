"""End-to-end tests: the commands, their files, signals, subprocesses and the browser, as users meet
them. Every test in this folder is marked slow (`-m 'not slow'` runs the unit tests alone, in under a
minute), and runs after the unit tests."""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_itemcollected(item):
    if HERE in Path(item.path).resolve().parents:
        item.add_marker(pytest.mark.slow)
