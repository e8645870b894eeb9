"""Build throwaway third-party plugin distributions (a module + dist-info) on sys.path."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def make_plugin_dist(
    root: Path, dist: str, version: str, module: str, source: str, entry_name: str | None = None
) -> Path:
    """Write ``module.py`` and ``<dist>-<version>.dist-info`` with a ``cream`` entry point."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[cream]\n{entry_name or module} = {module}\n")
    return root


def activate(root: Path) -> None:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def deactivate(root: Path, *modules: str) -> None:
    if str(root) in sys.path:
        sys.path.remove(str(root))
    for name in modules:
        sys.modules.pop(name, None)
