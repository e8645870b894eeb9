"""No module of the package imports a private name (``_name``) from another module: what one
module uses of another is public, named and documented there (issue 25)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("cream_plugin", "rewarders", "evaluators", "studies")


def private_imports(source: str) -> list[tuple[int, str, str]]:
    """(line, module, name) of every ``from module import _name`` in a source text."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    found.append((node.lineno, module, name))
    return found


def test_the_check_finds_a_private_import() -> None:
    source = ("from cream_plugin.forward.models import _torch_dtype, load_model\n"
              "from .x import __all__\n")
    assert private_imports(source) == [(1, "cream_plugin.forward.models", "_torch_dtype")]
    assert private_imports("def f():\n    from .logprobs import _plain_head\n") == [
        (2, ".logprobs", "_plain_head")]


def test_no_private_name_is_imported_from_another_module() -> None:
    files = [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 50
    bad = [
        f"{path.relative_to(ROOT)}:{line}: from {module} import {name}"
        for path in files
        for line, module, name in private_imports(path.read_text(encoding="utf-8"))
    ]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)
