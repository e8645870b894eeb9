"""The plugin system: hook specifications, the manager, the registry, methods, interfaces and
the built-ins."""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """``cream_plugin.plugins`` was one module (the plugin manager): its names still resolve,
    from ``manager``."""
    return getattr(importlib.import_module("cream_plugin.plugins.manager"), name)
