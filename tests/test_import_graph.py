"""The package's import graph has no cycle: module-level imports and those inside functions alike.

An import inside a function that closes a cycle still ties the two modules together (neither can be read, tested or
moved without the other) and hides the order in which they must load; the layers are: configs and checkpoint I/O
at the bottom, the model type above them, ``build_sam`` at the top, importing the predictors.

An edge ``a -> b`` is an ``import`` of ``b`` (or ``from b import x``, and ``b.x`` where that is a module) anywhere in
``a``'s source. Importing ``b`` also runs every package above it, so the edge reaches ``b``'s parent packages too,
except those that contain ``a`` (they are already loading whenever ``a`` runs).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sam2_jax",)


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """module name -> the package modules it imports (see the module docstring for the rule)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package `level - 1` steps above this module's own
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        edges = set()
        for target in targets:
            if target not in modules:
                continue
            edges.add(target)
            edges.update(a for a in _ancestors(target) if a in modules and not (name + ".").startswith(a + "."))
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_sees_the_known_edges():
    graph = import_graph()
    assert "sam2_jax.sam2_video_predictor" in graph["sam2_jax.build_sam"]
    # a call-time import counts as much as one at the top (checkpoints.load_params imports random_weights lazily)
    assert "sam2_jax.utils.random_weights" in graph["sam2_jax.checkpoints"]
    # importing a module runs the packages above it, except the importer's own
    assert "sam2_jax.tracker" in graph["sam2_jax.sam2_video_predictor"]
    assert "sam2_jax" not in graph["sam2_jax.build_sam"]


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_official_builder_names():
    """As in the official ``sam2/build_sam.py``, every builder is importable from ``build_sam``; the predictors build
    through the layer below it."""
    from sam2_jax import build_sam
    from sam2_jax.modeling import build, sam2_model

    assert build_sam.build_sam2_hf is build.build_sam2_hf and build_sam.build_sam2 is build.build_sam2
    assert build_sam.SAM2Model is sam2_model.SAM2Model
    assert callable(build_sam.build_sam2_video_predictor_hf) and callable(build_sam.build_sam2_video_predictor)


def test_imports_start_no_jax_backend():
    """Importing the package (the trainer, the builder and the predictors) computes nothing on a device: ``train.py``
    calls ``jax.distributed.initialize`` after its imports, which fails once a backend has started (a module-level
    ``jnp`` constant did that)."""
    import subprocess
    import sys

    code = (
        "import sam2_jax.training.trainer, sam2_jax.build_sam\n"
        "from sam2_jax.configs import get_config\n"
        "from sam2_jax.tracker.policies import POLICIES, policy_class\n"
        "get_config('sam2.1_hiera_t'); [policy_class(n) for n in POLICIES]\n"
        "from jax._src import xla_bridge\n"
        "print(sorted(xla_bridge._backends))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
