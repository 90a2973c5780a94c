"""Issue 22's rules for the code's layout, checked on every run.

No module in tasks/, scripts/ or bench/ over 400 lines; no import circles
among the modules of tasks/; no imports inside functions there (an import
that has to hide in a function is a circle or a layer upside down). One
exception, for speed rather than structure: Jinja2 is imported when the
first template is rendered (render.environment; a task meanwhile preloads
it in a thread), which keeps about 40 ms off the tasks that never render.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
LAZY_ALLOWED = {("render", "environment", "jinja2")}


def python_files(*dirs):
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


def package_modules():
    return {p.stem: ast.parse(p.read_text(), str(p))
            for p in (ROOT / "tasks").glob("*.py")}


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in python_files("tasks", "scripts", "bench")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def imports_of(tree, known):
    """The modules of tasks/ this one imports (relative imports: ``from .x
    import``, ``from . import x``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            found.update(n.split(".")[0] for n in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tasks"):
            found.add((node.module.split(".") + [""])[1])
    return found & known


def cycles(graph):
    """Every import circle, each as the path that closes it."""
    found, state, path = [], {}, []

    def visit(name):
        state[name] = "open"
        path.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                found.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return found


def test_no_import_circles_in_tasks():
    modules = package_modules()
    graph = {name: imports_of(tree, set(modules)) - {name} for name, tree in modules.items()}
    assert cycles(graph) == []


def test_cycles_finds_a_circle():  # the check above can fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_no_imports_inside_functions_in_tasks():
    inside = set()
    for name, tree in package_modules().items():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        inside.update((name, fn.name, a.name) for a in node.names)
                    elif isinstance(node, ast.ImportFrom):
                        inside.add((name, fn.name, "." * node.level + (node.module or "")))
    assert inside - LAZY_ALLOWED == set()
