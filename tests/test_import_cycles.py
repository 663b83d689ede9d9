"""No package of Rain imports another in a circle.

A unit is a subpackage (``rain.server``, ``rain.dashboard``, ...), a top-level module
(``rain.auth``, ``rain.cli``, ...) or ``rain_jupyter``. Every import counts, also those
inside functions: a lazy import is still a dependency, only a later one.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("rain", "rain_jupyter")


def _unit(module):
    """The unit a dotted module name belongs to."""
    parts = module.split(".")
    if parts[0] == "rain_jupyter":
        return "rain_jupyter"
    if parts[0] != "rain":
        return None
    if len(parts) == 1:
        return "rain"
    return "rain." + parts[1]


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _imports(path):
    module = _module_name(path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target
            for alias in node.names:        # ``from . import x``: x may be a subpackage
                yield f"{target}.{alias.name}"


def import_graph():
    edges = {}
    for package in PACKAGES:
        for directory, _dirs, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                source = _unit(_module_name(path))
                for target in _imports(path):
                    unit = _unit(target)
                    if unit is None or unit == source or unit == "rain":
                        continue
                    if unit.startswith("rain.") and not _exists(unit):
                        continue        # ``from rain import name`` of a plain attribute
                    edges.setdefault(source, set()).add(unit)
    return edges


def _exists(unit):
    base = os.path.join(ROOT, *unit.split("."))
    return os.path.isdir(base) or os.path.isfile(base + ".py")


def cycles(edges):
    """Strongly connected components with more than one unit (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_package_imports_are_acyclic():
    edges = import_graph()
    assert "rain.server" in edges and "rain.governor" in edges, "the graph was not read"
    found = cycles(edges)
    assert not found, "packages importing each other in a circle: " + "; ".join(
        " <-> ".join(component) for component in found)


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": {"c"}}, []),
])
def test_the_cycle_finder_finds_circles(edges, expected):
    assert cycles(edges) == expected
