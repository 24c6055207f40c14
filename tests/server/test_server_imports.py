"""No import loop anywhere in ``extauthz`` (``config`` <-> ``decision_log`` <-> ``workers`` was the
last one): imports read from the source, deferred and ``TYPE_CHECKING`` ones included, since
a loop that only a deferred import hides still ties the modules together."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import extauthz

PACKAGE = Path(extauthz.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``extauthz`` modules it imports (``from . import x`` counts x if a module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        graph[name].add(sub)
                    elif target in modules:
                        graph[name].add(target)
    return graph


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_finder_sees_a_loop_when_there_is_one() -> None:
    graph = import_graph()
    assert "extauthz.server.config" in graph["extauthz.server.workers"]  # it reads the source
    assert loops({**graph, "extauthz.server.config": {"extauthz.server.workers"}}) == [
        ["extauthz.server.config", "extauthz.server.workers"]
    ]


def test_no_module_of_the_package_is_in_an_import_loop() -> None:
    assert loops(import_graph()) == []


@pytest.mark.parametrize("module", ["config", "decision_log", "workers", "worker_plan", "app"])
def test_each_server_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    name = f"extauthz.server.{module}"
    proc = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
