"""The shape of the code that the engine issue asks for, checked on the source text (no model is built).

- Drivers reach the model only through public names: no method is named by string, nothing outside
  ``sam2_jax/modeling/`` calls an underscore-named ``SAM2Base`` method, and no module uses another module's
  underscore names (``engine._apply``).
- ``benchmarks/`` and ``scripts/`` import nothing from ``tests/`` (the PyTorch reference lives in
  ``sam2_jax/reference/``).
- No function in ``sam2_jax/`` is longer than 80 lines unless its docstring says why ("Long because").
- No line anywhere is hand-packed under the formatter's skip marker.
"""

import ast
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
MAX_LINES = 80


def _py_files(*folders: str) -> list[pathlib.Path]:
    return sorted(p for f in folders for p in (REPO / f).rglob("*.py"))


def _private_model_methods() -> set[str]:
    tree = ast.parse((REPO / "sam2_jax/modeling/sam2_base.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SAM2Base")
    return {f.name for f in cls.body if isinstance(f, ast.FunctionDef) and f.name.startswith("_")} - {"__call__"}


def test_no_method_is_called_by_name():
    pattern = re.compile(r'"_forward|method="_|method=\'_|getattr\(SAM2Base')
    hits = [
        f"{p.relative_to(REPO)}:{i}: {line.strip()}"
        for p in _py_files("sam2_jax", "benchmarks", "scripts")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_no_private_model_method_outside_modeling():
    private = _private_model_methods()
    hits = []
    for p in _py_files("sam2_jax", "benchmarks", "scripts"):
        if "modeling" in p.relative_to(REPO).parts:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in private:
                hits.append(f"{p.relative_to(REPO)}:{node.lineno}: .{node.attr}")
    assert not hits, "\n".join(hits)


def _module_aliases(tree: ast.AST) -> set[str]:
    """Names a file binds to modules of this repository (``import a.b as x``, ``from a import b`` with b a module)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = REPO / node.module.replace(".", "/")
            for a in node.names:
                if (base / f"{a.name}.py").exists() or (base / a.name).is_dir():
                    out.add(a.asname or a.name)
    return out


def test_no_private_names_of_other_modules():
    hits = []
    for p in _py_files("sam2_jax", "benchmarks", "scripts"):
        tree = ast.parse(p.read_text())
        aliases = _module_aliases(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                hits.append(f"{p.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("folder", ["benchmarks", "scripts", "sam2_jax"])
def test_no_imports_from_tests(folder):
    hits = []
    for p in _py_files(folder):
        for node in ast.walk(ast.parse(p.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            hits += [f"{p.relative_to(REPO)}:{node.lineno}: {n}" for n in names if n.split(".")[0] == "tests"]
    assert not hits, "\n".join(hits)


def test_functions_are_short():
    long = []
    for p in _py_files("sam2_jax"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES and "Long because" not in (ast.get_docstring(node) or ""):
                    long.append(f"{p.relative_to(REPO)}:{node.lineno} {node.name}: {n} lines")
    assert not long, "\n".join(long)


def test_no_hand_packed_lines():
    """The formatter lays out every line: a function is not kept under the cap by packing lines under a skip."""
    marker = "fmt: " + "skip"  # split so that this file does not match itself
    hits = [
        f"{p.relative_to(REPO)}:{i}"
        for p in _py_files("sam2_jax", "benchmarks", "scripts", "tests")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if marker in line
    ]
    assert not hits, "\n".join(hits)
