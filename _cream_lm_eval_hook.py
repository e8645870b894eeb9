"""Make a plain ``lm_eval --model cream-hf`` work: register ``cream-hf`` when lm-eval loads.

lm-eval 0.4.13 fills its model registry from its own package and reads no entry points, so it
cannot know a model class defined elsewhere. The install ships ``cream_plugin_lm_eval.pth``,
whose one line calls :func:`install` at interpreter start-up. That only appends a finder to
``sys.meta_path``; the finder does nothing until ``lm_eval.models`` is imported (lm-eval does
that itself to fill its registry with its own models), and then adds a lazy placeholder
(``"module:Class"``) for ``cream-hf`` beside them. Not earlier: ``lm_eval.api.registry.get_model``
imports ``lm_eval.models`` only while the registry is empty, so a name registered before that
would hide every built-in model. Nothing of cream_plugin is imported until lm-eval is asked for
``cream-hf``.

This module stays top-level and imports only the standard library, because it runs in every
Python process of the environment. ``CREAM_LM_EVAL_HOOK=0`` turns it off.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would double the start-up cost
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

MODELS_MODULE = "lm_eval.models"
MODELS = {"cream-hf": "cream_plugin.evaluators.cream_hflm:CreamHFLM"}


def register_models(model_registry: Any) -> None:
    """Add lazy placeholders for this package's lm-eval models to lm-eval's ``model_registry``."""
    for alias, target in MODELS.items():
        if alias not in model_registry:  # not .get(): that would import the class
            model_registry.register(alias, target=target)


class _RegisteringLoader:
    """Runs the real loader of ``lm_eval.models``, then registers the models beside lm-eval's."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> object:  # get_source, get_filename, ... of the real one
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            from lm_eval.api.registry import model_registry

            register_models(model_registry)
        except Exception as exc:  # a registry change must not break lm-eval
            print(f"cream-plugin: could not register lm-eval models ({exc!r})", file=sys.stderr)


class RegistryWatcher:
    """Meta-path finder that only reacts to ``lm_eval.models``.

    Plain classes, not ``importlib.abc`` subclasses: importing that module costs more start-up
    time than this whole file.
    """

    def find_spec(self, fullname: str, path: Any,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != MODELS_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _RegisteringLoader(spec.loader)  # type: ignore[assignment]
        return spec


def install() -> None:
    """Called from the ``.pth`` line: add the watcher once, unless turned off."""
    if os.environ.get("CREAM_LM_EVAL_HOOK", "1") == "0":
        return
    if any(isinstance(finder, RegistryWatcher) for finder in sys.meta_path):
        return
    if MODELS_MODULE in sys.modules:  # lm-eval's models already loaded (install() called late)
        register_models(sys.modules["lm_eval.api.registry"].model_registry)
        return
    sys.meta_path.insert(0, RegistryWatcher())
