"""The shape of the code: an import graph without cycles, training without the analysis tools, modules and
functions of a readable size, and no module reaching into another's private names.

Read statically (ast), so function-level imports count as much as module-level ones, and so do modules
imported by name (`importlib.import_module("pss.x")`, or an f-string naming modules under a package).
"""
from __future__ import annotations

import ast
from pathlib import Path


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


def _imported_by_name(node: ast.Call) -> list[str]:
    """The pss modules an `importlib.import_module(...)` / `import_module(...)` call can import: a string
    literal names one; an f-string naming a package prefix (`f"pss.commands.{name}"`) any module under it."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args:
        return []
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        prefix = str(arg.values[0].value)
        if prefix.endswith("."):
            return [m for m in MODULES if m.startswith(prefix)]
    return []


def imports_of(module: str) -> set[str]:
    """Every pss module `module` imports, at any depth of its code (functions included, and modules imported
    by name through importlib)."""
    tree = ast.parse(MODULES[module].read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            names = [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call):
            names = _imported_by_name(node)
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


def test_the_graph_reader_sees_modules_imported_by_name(tmp_path):
    """importlib hid two cycles from this test (config -> tasks -> train/pretrain -> config, and the results
    page <-> benchmark scripts): a module imported by name is an import."""
    assert "pss.commands.train" in GRAPH["pss.cli"]  # importlib.import_module(f"pss.commands.{name}")
    code = ("import importlib\nfrom importlib import import_module\n"
            "def f(n):\n    importlib.import_module('pss.train')\n    import_module(f'pss.tasks.{n}')\n"
            "    importlib.import_module(n)\n")
    calls = [node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Call)]
    found = {m for c in calls for m in _imported_by_name(c)}
    assert found == {"pss.train", "pss.tasks.classification", "pss.tasks.simmim"}


def test_the_config_sits_on_the_ground_floor():
    """pss.settings holds plain sections and the checks that need nothing above them: it imports no model,
    budget solver, optimizer, pre-flight or compiler module (checks that need them run in pss.train.check_config)."""
    above = ("pss.models", "pss.budget", "pss.optim", "pss.preflight", "pss.dynamo", "pss.tasks", "pss.train")
    reached = {m for m in GRAPH["pss.settings"] if m in above or m.startswith(tuple(a + "." for a in above))}
    assert not reached, sorted(reached)


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


def size_report(module_lines: int = MAX_MODULE_LINES, function_lines: int = MAX_FUNCTION_LINES) -> list[str]:
    """Rooms and functions past the review signals (sizes are prompts to find a concept that wants its own
    home, not limits to trim towards): one line each, largest first. Printed at the end of every test run
    (tests/conftest.py)."""
    rooms = sorted(((len(p.read_text().splitlines()), m) for m, p in MODULES.items()), reverse=True)
    out = [f"module {m}: {n} lines (review signal {module_lines})" for n, m in rooms if n > module_lines]
    funcs = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        funcs += [(n.end_lineno - n.lineno + 1, f"{module}.{n.name}") for n in ast.walk(tree)
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.end_lineno - n.lineno + 1 > function_lines and not _model_constructor(module, n, parents)]
    return out + [f"function {f}: {n} lines (review signal {function_lines})" for n, f in sorted(funcs, reverse=True)]


def _model_constructor(module: str, node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Model constructors are excepted: `__init__` of a class in pss.models, and registered model builders."""
    if not module.startswith("pss.models"):
        return False
    if isinstance(node, ast.FunctionDef) and node.name == "__init__":
        return isinstance(parents.get(node), ast.ClassDef)
    return any(isinstance(d, ast.Name) and d.id == "register_model" for d in getattr(node, "decorator_list", []))


def test_the_size_report_names_rooms_and_functions_past_the_signals():
    lines = size_report(module_lines=100, function_lines=40)
    rooms = [line for line in lines if line.startswith("module ")]
    sizes = [int(line.split(": ")[1].split()[0]) for line in rooms]
    assert sizes == sorted(sizes, reverse=True) and all(n > 100 for n in sizes)
    assert any(line.startswith("module pss.engine: ") for line in rooms)  # the loop is well over 100 lines
    assert any(line.startswith("function pss.") for line in lines)
    assert not any("PssVisionTransformer.__init__" in line for line in lines)  # model constructors are excepted
    assert size_report(module_lines=10**6, function_lines=10**6) == []


def test_every_package_is_shipped():
    """pyproject.toml lists the packages a wheel carries: a new sub-package (pss.tasks) missing there would
    import from a checkout and not from an install."""
    import tomllib

    listed = set(tomllib.loads((SRC.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {_module_name(p) for p in PKG.rglob("__init__.py")}
    assert packages <= listed, sorted(packages - listed)


BENCHMARKS = SRC.parent / "benchmarks"


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def run_folder_names_spelled(paths: list[Path], names: set[str]) -> list[str]:
    """Strings in code (docstrings aside) that name a run-folder file as a path: the name alone or a path
    ending in it (an f-string's ``f"{folder}/summary.json"`` too). Prose that mentions a file is not one."""
    found = []
    for path in paths:
        tree = ast.parse(path.read_text())
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                text = node.value.strip()
                if any(text == n or text.endswith("/" + n) for n in names):
                    found.append(f"{path}:{node.lineno}: {text!r}")
    return found


def test_no_run_folder_file_name_outside_rundir(tmp_path):
    """`pss.runfolder.RunDir` names (and reads) a run folder's files; nobody else spells them. The lock
    file's name is `pss.outputs`'s (the lock is held beneath RunDir), which RunDir.LOCK repeats."""
    from pss.runfolder import RunDir

    names = {v for k, v in vars(RunDir).items() if k.isupper() and isinstance(v, str)}
    assert {"summary.json", "train_log.jsonl", "encoder.safetensors", "e2e_run.json"} <= names
    files = [p for p in sorted(PKG.rglob("*.py")) + sorted(BENCHMARKS.glob("*.py"))
             if p != PKG / "runfolder.py" and p != PKG / "outputs.py"]
    assert not run_folder_names_spelled(files, names), "\n".join(run_folder_names_spelled(files, names))
    # the check sees a name built into a path, and lets prose and docstrings be
    probe = tmp_path / "probe.py"
    probe.write_text('"""Writes summary.json."""\nA = run / "summary.json"\nB = f"{run}/train_log.jsonl"\n'
                     'C = "prose that mentions config.yaml"\n')
    assert [h.split(": ", 1)[0].rsplit(":", 1)[1] for h in run_folder_names_spelled([probe], names)] == ["2", "3"]
