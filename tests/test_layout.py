"""The package's shape: wings, no import circle, and the old flat module paths still import."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from cream_plugin.moved_modules import MOVED

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = {
    "cream_plugin": REPO / "cream_plugin",
    "cream_plugin.rewarders": REPO / "rewarders",
    "cream_plugin.evaluators": REPO / "evaluators",
}
MAX_TOP_LEVEL_MODULES = 12


def package_modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name, from the repository's folders."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imported_modules(tree: ast.Module, modules: set[str]) -> set[str]:
    """Every module of ``modules`` a module imports anywhere: top level, functions and
    TYPE_CHECKING blocks. ``from pkg import sub`` is an edge to the submodule ``pkg.sub`` (as
    ``import pkg.sub``), ``from pkg import name`` one to ``pkg``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{alias.name}" for alias in node.names} & modules
            found |= subs
            if len(subs) < len(node.names):
                found.add(node.module)
    return found & modules


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(ast.parse(path.read_text()), set(modules)) - {name}
            for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    """Counted as strictly as a drawing of the package would: lazy and type-only imports too."""
    assert circles(import_graph()) == []


def test_few_modules_directly_in_the_package():
    top = sorted(p.name for p in (REPO / "cream_plugin").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_path_is_the_new_module(old):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])


def test_old_module_path_warns_where_it_moved():
    script = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
              "import cream_plugin.trainer\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert "cream_plugin.trainer moved to cream_plugin.trainers.cream_trainer" in result.stderr
