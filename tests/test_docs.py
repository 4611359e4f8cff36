"""docs/math.md links each equation to the line that computes it: every link must still land there."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[`([^`]+)`\]\(\.\./(nn_gpu/\w+\.py)#L(\d+)\)")


def test_every_code_link_in_math_md_points_at_its_code():
    text = (ROOT / "docs" / "math.md").read_text()
    links = LINK.findall(text)
    assert len(links) >= 15
    for code, file, line in links:
        lines = (ROOT / file).read_text().splitlines()
        assert code in lines[int(line) - 1], f"{file}#L{line} no longer holds `{code}`"
