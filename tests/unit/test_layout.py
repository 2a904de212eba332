"""The package layout shows the method: one home per step, arrows down the pipeline, family knowledge in models/.

Read from the source (AST), so a function-local import counts like a top-level one; imports under
`if TYPE_CHECKING:` are for type checkers only and do not count.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import types
from pathlib import Path

import pytest

import superneurons

ROOT = Path(superneurons.__file__).parent
TOP_LEVEL = {"__init__.py", "__main__.py", "errors.py", "config.py", "constants.py"}
MAX_LINES = 400
#: transformers internals and family details that only model adapters may name
FAMILY_NAMES = {"_deepstack_process", "get_rope_index", "image_token_id", "image_token_index"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imports(name: str, path: Path) -> set[str]:
    """The superneurons modules `name` imports at run time (anywhere in the file)."""
    deps: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                       for a in node.names]
        else:
            continue
        deps |= {t for t in targets if t in MODULES and t != name}
    return deps


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(GRAPH[n]):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = 2
        path.pop()
        return None

    for n in sorted(GRAPH):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycle_counting_function_local_imports():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_planted_cycle(monkeypatch):
    assert "superneurons.errors" in GRAPH["superneurons.config"]
    monkeypatch.setitem(GRAPH, "superneurons.errors", GRAPH["superneurons.errors"] | {"superneurons.config"})
    cycle = _cycle()
    assert cycle is not None and set(cycle) == {"superneurons.config", "superneurons.errors"}


def test_the_cycle_check_sees_function_local_imports():
    code = "def f():\n    from superneurons.models import base\n"
    nodes = [n for n in _runtime_nodes(ast.parse(code)) if isinstance(n, ast.ImportFrom)]
    assert nodes and nodes[0].module == "superneurons.models"
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import superneurons.cli\n"
    assert not [n for n in _runtime_nodes(ast.parse(guarded)) if isinstance(n, ast.Import)]


def test_arrows_point_down_the_pipeline():
    """Lower steps never import higher ones (the rows below are the allowed direction)."""
    order = ["constants", "errors", "config", "utils", "data", "models", "activations", "scoring", "selection",
             "inference", "evaluation", "experiments", "report", "study", "synth", "integrations", "cli"]
    rank = {step: i for i, step in enumerate(order)}

    def step(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else None

    wrong = []
    for name, deps in GRAPH.items():
        s = step(name)
        if s not in rank:
            continue
        for dep in deps:
            d = step(dep)
            if d in rank and rank[d] > rank[s]:
                wrong.append(f"{name} -> {dep}")
    assert not wrong, "imports up the pipeline: " + ", ".join(sorted(wrong))


def test_only_the_allowed_files_at_the_top_and_files_stay_small():
    top = {p.name for p in ROOT.glob("*.py")}
    assert top <= TOP_LEVEL, f"move {sorted(top - TOP_LEVEL)} into the subpackage of its step"
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_family_knowledge_stays_in_models():
    found = []
    for name, path in MODULES.items():
        if name.startswith("superneurons.models"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Attribute):
                names = [node.attr]
            elif isinstance(node, ast.Name):
                names = [node.id]
            elif isinstance(node, ast.alias):
                names = [node.name.split(".")[-1]]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr", "setattr"):
                names = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            for n in names:
                if n in FAMILY_NAMES or n.endswith("ForConditionalGeneration") or n.startswith("AutoModel"):
                    found.append(f"{name}: {n}")
    assert not found, "model-family knowledge outside superneurons/models: " + ", ".join(sorted(set(found)))


def test_the_library_never_imports_the_cli():
    users = sorted(n for n, deps in GRAPH.items() if not n.startswith("superneurons.cli")
                   and n != "superneurons.__main__" and any(d.startswith("superneurons.cli") for d in deps))
    assert not users


def test_public_names_are_what_they_say_after_every_module_is_imported():
    """A subpackage named like a public function would replace it on `superneurons` once imported."""
    for m in pkgutil.walk_packages(superneurons.__path__, "superneurons."):
        importlib.import_module(m.name)
    shadowed = [n for n in superneurons.__all__ if isinstance(getattr(superneurons, n), types.ModuleType)]
    assert not shadowed
    from superneurons import capture, evaluate, predict, probe

    assert all(callable(f) and not isinstance(f, types.ModuleType) for f in (capture, evaluate, predict, probe))


@pytest.mark.parametrize("package", ["activations", "scoring", "selection", "inference", "evaluation", "models", "study",
                                     "integrations"])
def test_every_subpackage_says_what_each_module_owns(package):
    doc = importlib.import_module(f"superneurons.{package}").__doc__ or ""
    files = {p.name for p in (ROOT / package).glob("*.py") if p.name != "__init__.py"}
    assert all(f in doc for f in files), f"superneurons/{package}/__init__.py lists {sorted(f for f in files if f not in doc)} nowhere"
