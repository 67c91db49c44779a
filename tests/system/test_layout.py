"""The package reads as the path of the data: subpackages in layer order, no import from a later
layer into an earlier one, and no import circle (deferred and function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "icl_stl"

# The path of the data. A subpackage may import its own layer and earlier ones only.
LAYERS = ["config", "theory", "persistence", "data", "models", "training", "runs", "loop",
          "probes", "bench", "report", "cli"]
# theory is pure mathematics: it sits beside config at the bottom and imports neither.
SAME_RANK = {"theory": 0}


def _rank(layer: str) -> int:
    return SAME_RANK.get(layer, LAYERS.index(layer))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Every icl_stl module `module` imports, at any depth of its code (TYPE_CHECKING aside)."""
    tree = ast.parse(MODULES[module].read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
            for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from pkg import name` imports pkg.name when that is a module, else pkg itself
            targets = [next((t for t in (f"{node.module}.{a.name}", node.module) if _resolve(t)),
                            node.module) for a in node.names]
        else:
            continue
        for target in targets:
            resolved = _resolve(target) if target.startswith("icl_stl") else None
            if resolved and resolved != module:
                out.add(resolved)
    return out


GRAPH = {m: imports_of(m) for m in MODULES if m != "icl_stl"}  # the root's lazy attribute aside


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_planted_circle():
    planted = {**GRAPH, "icl_stl.config": GRAPH["icl_stl.config"] | {"icl_stl.loop.runner"}}
    assert any("icl_stl.config" in c and "icl_stl.loop.runner" in c for c in _cycles(planted))


def _layer(module: str) -> str:
    return module.split(".")[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    # the package root holds only RESULTS_VERSION and a lazy attribute: every layer may read it
    return sorted(f"{m} imports {t}" for m, targets in graph.items() for t in targets
                  if t != "icl_stl" and _rank(_layer(t)) > _rank(_layer(m)))


def test_no_layer_imports_a_later_one():
    assert upward_imports(GRAPH) == []


def test_a_planted_upward_import_is_found():
    planted = {"icl_stl.training.engine": {"icl_stl.report.collect"}}
    assert upward_imports(planted) == ["icl_stl.training.engine imports icl_stl.report.collect"]


def test_every_subpackage_is_a_known_layer_and_the_root_holds_no_module():
    root_modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert root_modules == ["__init__.py"]
    subpackages = sorted(p.name for p in PACKAGE.iterdir()
                         if p.is_dir() and (p / "__init__.py").exists())
    assert set(subpackages) == set(LAYERS)


def test_no_module_is_named_like_a_test():
    assert [m for m in MODULES if m.rsplit(".", 1)[-1].startswith("test")] == []
