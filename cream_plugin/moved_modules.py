"""Old module paths (before the modules were grouped into wings) keep importing, with a warning.

``import cream_plugin.trainer`` and ``from cream_plugin.pipeline import Pipeline`` worked before the
flat modules moved into ``loop/``, ``forward/``, ``trainers/``, ``report/``, ``ranking/`` and
``plugins/``; scripts and notebooks written against them keep working. The old name is bound to
the same module object as the new one (no copy), so monkeypatching either affects both.
README.md ("Module paths") lists the table.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "cream_plugin.artifacts": "cream_plugin.loop.artifacts",
    "cream_plugin.config_values": "cream_plugin.config_checks",
    "cream_plugin.consistency": "cream_plugin.ranking.consistency",
    "cream_plugin.decoding": "cream_plugin.forward.decoding",
    "cream_plugin.default_plugins": "cream_plugin.plugins.builtins",
    "cream_plugin.default_plugins.consistency": "cream_plugin.plugins.builtins.consistency_metrics",
    "cream_plugin.default_plugins.methods": "cream_plugin.plugins.builtins.methods",
    "cream_plugin.default_plugins.samplers": "cream_plugin.plugins.builtins.samplers",
    "cream_plugin.default_plugins.trainers": "cream_plugin.plugins.builtins.trainers",
    "cream_plugin.distributed": "cream_plugin.loop.distributed",
    "cream_plugin.files": "cream_plugin.loop.files",
    "cream_plugin.hookspecs": "cream_plugin.plugins.hookspecs",
    "cream_plugin.io": "cream_plugin.loop.row_files",
    "cream_plugin.kv_cache": "cream_plugin.forward.kv_cache",
    "cream_plugin.launch": "cream_plugin.trainers.launch",
    "cream_plugin.logprob_cache": "cream_plugin.forward.logprob_cache",
    "cream_plugin.logprobs": "cream_plugin.forward.logprobs",
    "cream_plugin.methods": "cream_plugin.plugins.methods",
    "cream_plugin.models": "cream_plugin.forward.models",
    "cream_plugin.packing": "cream_plugin.forward.packing",
    "cream_plugin.pairs": "cream_plugin.ranking.pairs",
    "cream_plugin.pipeline": "cream_plugin.loop.pipeline",
    "cream_plugin.placement": "cream_plugin.forward.placement",
    "cream_plugin.prefix_tree": "cream_plugin.forward.prefix_tree",
    "cream_plugin.preflight": "cream_plugin.loop.preflight",
    "cream_plugin.prompt_trees": "cream_plugin.forward.prompt_trees",
    "cream_plugin.prompts": "cream_plugin.loop.prompt_pool",
    "cream_plugin.registry": "cream_plugin.plugins.registry",
    "cream_plugin.report_evidence": "cream_plugin.report.evidence",
    "cream_plugin.results": "cream_plugin.report.results",
    "cream_plugin.run_folder": "cream_plugin.loop.run_folder",
    "cream_plugin.sampling": "cream_plugin.forward.sampling",
    "cream_plugin.sampling_vllm": "cream_plugin.forward.sampling_vllm",
    "cream_plugin.scir": "cream_plugin.trainers.scir_trainer",
    "cream_plugin.scir_judge": "cream_plugin.trainers.scir_judge",
    "cream_plugin.scir_losses": "cream_plugin.trainers.scir_losses",
    "cream_plugin.seeds_report": "cream_plugin.report.seeds",
    "cream_plugin.sft": "cream_plugin.trainers.sft",
    "cream_plugin.stages": "cream_plugin.loop.stages",
    "cream_plugin.stages.base": "cream_plugin.loop.stage",
    "cream_plugin.stages.consistency": "cream_plugin.loop.stages.consistency",
    "cream_plugin.stages.context": "cream_plugin.loop.context",
    "cream_plugin.stages.correctness": "cream_plugin.loop.stages.correctness",
    "cream_plugin.stages.evaluate": "cream_plugin.loop.stages.evaluate",
    "cream_plugin.stages.evidence": "cream_plugin.loop.stages.evidence",
    "cream_plugin.stages.identity": "cream_plugin.loop.identity",
    "cream_plugin.stages.internal_consistency": "cream_plugin.loop.stages.internal_consistency",
    "cream_plugin.stages.logps": "cream_plugin.loop.stages.logps",
    "cream_plugin.stages.movement": "cream_plugin.loop.stages.movement",
    "cream_plugin.stages.pairs": "cream_plugin.loop.stages.pairs",
    "cream_plugin.stages.prompts": "cream_plugin.loop.stages.prompts",
    "cream_plugin.stages.rewards": "cream_plugin.loop.stages.rewards",
    "cream_plugin.stages.runner": "cream_plugin.loop.runner",
    "cream_plugin.stages.sample": "cream_plugin.loop.stages.sample",
    "cream_plugin.stages.sft": "cream_plugin.loop.stages.sft",
    "cream_plugin.stages.train": "cream_plugin.loop.stages.train",
    "cream_plugin.tracking": "cream_plugin.trainers.tracking",
    "cream_plugin.trainer": "cream_plugin.trainers.cream_trainer",
    "cream_plugin.trainer_utils": "cream_plugin.trainers.cream_utils",
    "cream_plugin.types": "cream_plugin.plugins.interfaces",
}
"""Old dotted module name -> the module that holds its code now."""


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of an old module path with the module at its new path."""

    def find_spec(self, fullname: str, path: object = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there",
                      DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The module is the new one, already executed."""


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once (called by ``cream_plugin/__init__``).

    First, because an old package path (``cream_plugin.stages``) is bound to the new package, whose
    ``__path__`` would let the path finder load ``cream_plugin.stages.sample`` a second time as a
    separate module; the finder answers only the names in :data:`MOVED`.
    """
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
