"""The code's layout, checked on every run: folders are layers that import one way.

tasks/ holds a few top modules (the collection, the executor, errors,
output) and one subpackage per layer, listed in LAYERS from the top (what
an operator types) to the bottom (settings). A module may import its own
layer and the layers below it, never one above: the order between folders
is checked here, not only the absence of circles. Also: no module in
tasks/, scripts/ or bench/ over 400 lines; no import circles among the
modules; no imports inside functions (an import that has to hide in a
function is a circle or a layer upside down), with one exception for
speed: Jinja2 is imported when the first template is rendered
(model/templating.environment), which keeps about 40 ms off the tasks that
never render. Each layer's __init__.py says what the layer is and what it
may import.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
MAX_TOP_MODULES = 6
LAZY_ALLOWED = {("model.templating", "environment", "jinja2")}

# From the top down: each may import itself and what comes after it.
LAYERS = ("cli", "flows", "deploy", "shipping", "connection", "commands", "model",
          "configuration")
# The top modules everyone may import (and that import no layer); the
# collection and the executor are imported by nobody in tasks/.
BASE = ("errors", "output")


def python_files(*dirs):
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


def package_modules(root=ROOT / "tasks"):
    """{"deploy.steps": ast, "errors": ast, "flows": ast (its __init__), ...}"""
    found = {}
    for p in sorted(root.rglob("*.py")):
        if "templates" in p.parts:
            continue
        parts = p.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1] or ("__init__",)
        found[".".join(parts)] = ast.parse(p.read_text(), str(p))
    return found


def package_of(module, modules):
    """The package a module's relative imports start from, as a list of parts."""
    if module == "__init__" or module in LAYERS:  # a package's __init__
        return [] if module == "__init__" else [module]
    return module.split(".")[:-1]


def imports_of(modules):
    """{module: the modules of tasks/ it imports}: ``from .x import y`` names
    x, or x.y where y is a module; a layer's package counts as a module."""
    graph = {}
    for name, tree in modules.items():
        deps = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 0:
                if not (node.module or "").startswith("tasks"):
                    continue
                target = node.module.split(".")[1:]
            else:
                base = package_of(name, modules)
                base = base[:len(base) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                module = ".".join(target + [alias.name])
                deps.add(module if module in modules else ".".join(target))
        graph[name] = (deps & set(modules)) - {name}
    return graph


def layer_of(module):
    head = module.split(".")[0]
    return head if head in LAYERS else None


def upward_imports(graph):
    """(importer, imported) pairs that run against LAYERS' order, or from a
    base module into any layer."""
    wrong = []
    for name, deps in graph.items():
        mine = layer_of(name)
        for dep in sorted(deps):
            theirs = layer_of(dep)
            if theirs is None:
                if dep not in BASE and name != "__init__":
                    wrong.append((name, dep))
                continue
            if mine is None:
                if name != "__init__":  # the collection imports the cli
                    wrong.append((name, dep))
            elif LAYERS.index(theirs) < LAYERS.index(mine):
                wrong.append((name, dep))
    return wrong


def test_the_folders_import_one_way():
    assert upward_imports(imports_of(package_modules())) == []


def test_the_layer_check_would_notice_an_import_upward(tmp_path):
    """The check above can fail: a model module that imports a flow."""
    for folder in ("model", "flows"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text('"""layer"""\n')
    (tmp_path / "errors.py").write_text("")
    (tmp_path / "flows" / "release.py").write_text("from ..model.plan import x\n")
    (tmp_path / "model" / "plan.py").write_text(
        "from ..errors import Failure\nfrom ..flows.release import y\n")
    graph = imports_of(package_modules(tmp_path))
    assert upward_imports(graph) == [("model.plan", "flows.release")]


def test_every_module_lives_in_a_layer_but_a_few():
    top = sorted(p.stem for p in (ROOT / "tasks").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
    folders = sorted(p.name for p in (ROOT / "tasks").iterdir()
                     if p.is_dir() and (p / "__init__.py").exists())
    assert folders == sorted(LAYERS)


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_says_what_it_is_and_what_it_may_import(layer):
    doc = ast.get_docstring(ast.parse((ROOT / "tasks" / layer / "__init__.py").read_text()))
    assert doc and "May import" in doc
    below = LAYERS[LAYERS.index(layer) + 1:]
    assert all(name in doc for name in below), f"{layer}/__init__.py names {below}"


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in python_files("tasks", "scripts", "bench")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


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
    graph = imports_of(package_modules())
    # A package's __init__ that hands its modules on (flows) is not a circle
    # with them: they never import it.
    graph = {name: {d for d in deps if d not in LAYERS} for name, deps in graph.items()}
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
