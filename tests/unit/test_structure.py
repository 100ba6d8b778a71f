"""The shape of the code: an import graph without cycles, training without the analysis tools, modules and
functions of a readable size, and no module reaching into another's private names.

Read statically (ast), so function-level imports count as much as module-level ones.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "pss"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    is_pkg = MODULES[module].name == "__init__.py"
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _target(name: str) -> str | None:
    """The pss module `name` refers to (a module, or a name inside one), None outside pss."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Every pss module `module` imports, at any depth of its code (functions included)."""
    tree = ast.parse(MODULES[module].read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            t = _target(n)
            if t is not None and t != module:
                out.add(t)
    # importing pss.a.b runs pss/a/__init__.py first, unless the importer is inside pss.a (then it already runs)
    parents = {p for t in out for p in _parents(t) if not module.startswith(p + ".")}
    return (out | parents) - {module}


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in MODULES]


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(GRAPH):
        if m not in index:
            visit(m)
    return out


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        for t in GRAPH[m]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def test_the_graph_reader_sees_function_level_imports():
    assert "pss.train" in GRAPH["pss.study"]  # `from pss.train import ...` inside run_plan
    assert "pss.errors" in GRAPH["pss.config"]


def test_the_import_graph_has_no_cycle():
    cycles = _cycles()
    detail = []
    for comp in cycles:
        edges = [f"{a} -> {b}" for a in comp for b in sorted(GRAPH[a]) if b in comp]
        detail.append(", ".join(comp) + "\n    " + "\n    ".join(edges))
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_training_does_not_import_the_analysis_tools():
    reached = _closure("pss.train")
    assert not {m for m in reached if m == "pss.analysis" or m.startswith("pss.analysis.")}, sorted(reached)


def test_no_module_reaches_into_another_modules_private_names():
    bad = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, node)
                if _target(target) not in (None, module):
                    bad += [f"{module}: from {target} import {a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "\n".join(bad)


def test_no_module_is_over_the_size_limit():
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, big


def _model_constructor(module: str, node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Model constructors are excepted: `__init__` of a class in pss.models, and registered model builders."""
    if not module.startswith("pss.models"):
        return False
    if isinstance(node, ast.FunctionDef) and node.name == "__init__":
        return isinstance(parents.get(node), ast.ClassDef)
    return any(isinstance(d, ast.Name) and d.id == "register_model" for d in getattr(node, "decorator_list", []))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_function_is_over_the_size_limit(module):
    tree = ast.parse(MODULES[module].read_text())
    parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    long = [f"{module}.{n.name}: {n.end_lineno - n.lineno + 1} lines" for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES and not _model_constructor(module, n, parents)]
    assert not long, long
