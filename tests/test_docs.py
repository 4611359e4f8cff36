"""docs/math.md quotes the code behind each equation and links its file: each quote must still be in that file."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[`([^`]+)`\]\(\.\./(nn_gpu/\w+\.py)\)")


def test_every_code_link_in_math_md_quotes_its_file():
    text = (ROOT / "docs" / "math.md").read_text()
    links = LINK.findall(text)
    assert len(links) >= 15
    for code, file in links:
        assert any(code in line for line in (ROOT / file).read_text().splitlines()), f"{file} no longer holds `{code}`"
    assert "](../nn_gpu/" in text and not re.search(r"\]\(\.\./nn_gpu/[^)]*#L", text)  # no line numbers to go stale
