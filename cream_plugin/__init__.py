"""cream-plugin: consistency-regularised self-rewarding language models for TRL and lm-eval."""

from __future__ import annotations

from typing import Any

from cream_plugin import moved_modules
from cream_plugin.plugins.hookspecs import hookimpl
from cream_plugin.plugins.interfaces import RewardResult
from cream_plugin.plugins.manager import get_plugin_manager
from cream_plugin.plugins.registry import (
    get_consistency_metric,
    get_evaluator,
    get_rewarder,
    get_sampler,
    get_trainer,
    list_components,
)

moved_modules.install()  # old flat module paths (cream_plugin.trainer, ...) keep importing

__version__ = "0.1.0"

__all__ = [
    "RewardResult",
    "__version__",
    "get_consistency_metric",
    "get_evaluator",
    "get_plugin_manager",
    "get_rewarder",
    "get_sampler",
    "get_trainer",
    "hookimpl",
    "list_components",
]

_LAZY = {
    # Heavy (torch / trl) names are imported on first use so `import cream_plugin` stays light.
    "CREAMConfig": "cream_plugin.trainers.cream_config",
    "CREAMTrainer": "cream_plugin.trainers.cream_trainer",
    "consistency_rate": "cream_plugin.ranking.consistency",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cream_plugin' has no attribute {name!r}")
