"""The run report: Markdown tables, the instruments gathered for it, seeds, the results table."""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """``cream_plugin.report`` was one module (the run report): its names still resolve, from
    ``markdown``."""
    return getattr(importlib.import_module("cream_plugin.report.markdown"), name)
