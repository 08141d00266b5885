"""The layers import downwards only and no module imports itself in a circle.

Every ``import`` of the four packages is read from the source (module level and inside
functions alike), so a function-level import cannot hide a circle. Layers, lowest first:
``datasets`` -> ``methods`` -> ``benchmark`` -> ``reports``. The one declared exception is the
command line (``benchmark.cli``), the application on top of every layer: ``python -m benchmark
report`` and ``main`` write the HTML report.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = ("datasets", "methods", "benchmark", "reports")
ENTRY_POINTS = {"benchmark.cli": {"reports"}}


def module_files() -> dict[str, Path]:
    out = {}
    for package in LAYERS:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of the four packages it imports (anywhere in its source)."""
    modules = module_files()

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in modules:
                return ".".join(parts[:i])
        return None

    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {resolve(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets |= {resolve(f"{source}.{alias.name}") or resolve(source) for alias in node.names}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_package_module_is_seen():
    graph = import_graph()
    assert {"datasets.kernel", "methods.network", "benchmark.runner", "reports.html"} <= set(graph)
    assert "datasets.scene" in graph["datasets.cases"]  # imports are resolved to modules


def test_layers_import_downwards_only():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = [(a, b) for a, targets in import_graph().items() for b in targets
              if rank[b.split(".")[0]] > rank[a.split(".")[0]]
              and b.split(".")[0] not in ENTRY_POINTS.get(a, set())]
    assert not upward, f"upward imports (lower layer -> higher layer): {upward}"


def test_no_import_circles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_the_circle_finder_finds_circles(graph, expected):
    assert cycles(graph) == expected
