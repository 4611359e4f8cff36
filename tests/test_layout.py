"""The library's shape: `import nn_gpu` stays light, modules and functions stay small enough to read,
and no two modules import each other."""

import ast
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "nn_gpu"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def modules():
    """{dotted name: path} of every module of nn_gpu."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def test_import_nn_gpu_loads_no_command_and_no_pandas():
    code = "import sys, nn_gpu; print(' '.join(sorted(m for m in sys.modules if m.startswith(('nn_gpu', 'pandas')))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    names = loaded.stdout.split()
    assert "nn_gpu.model" in names and "nn_gpu.estimator" in names  # what it offers is there
    assert [name for name in names if name.startswith(("nn_gpu.commands", "pandas"))] == []


def test_no_module_is_over_450_lines_and_no_function_over_60():
    long_functions = []
    for name, path in modules().items():
        text = path.read_text()
        assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{name}: {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}")
    assert long_functions == []


def imports(path: Path, known: dict) -> set[str]:
    """The nn_gpu modules `path` imports when it is imported (top level; not inside functions or
    `if TYPE_CHECKING:`)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nn_gpu"):
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("nn_gpu")}
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each import cycle of `graph` (module: the modules it imports), as 'a -> b -> a'."""
    state, cycles = {}, []

    def visit(name, stack):
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                cycles.append(" -> ".join([*stack[stack.index(other) :], other]))
            elif other not in state:
                visit(other, [*stack, other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycle():
    known = modules()
    assert find_cycles({name: imports(path, known) - {name} for name, path in known.items()}) == []


def test_the_cycle_check_sees_a_cycle(tmp_path):
    (tmp_path / "a.py").write_text("from nn_gpu.b import x\nfrom nn_gpu import c\n")
    known = {"nn_gpu": tmp_path, "nn_gpu.b": tmp_path, "nn_gpu.c": tmp_path}
    assert imports(tmp_path / "a.py", known) == {"nn_gpu.b", "nn_gpu.c"}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
