"""Hook specifications: the extension points of cream-plugin.

Every hook receives a ``register`` callback, so a plugin adds any number of components
with one function. Built-ins are registered through these same hooks.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "cream"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_rewarders(register: Any) -> None:
    """Add rewarders: ``register(name, factory, description="")``.

    ``factory(**config)`` returns an object with ``score(prompts, responses) -> RewardResult``.
    """


@hookspec
def register_consistency_metrics(register: Any) -> None:
    """Add ranking-consistency metrics: ``register(name, fn, description="")``.

    ``fn(a, b)`` takes two (P, N) reward tables and returns a (P,) array of statistics.
    """


@hookspec
def register_trainers(register: Any) -> None:
    """Add preference trainers: ``register(name, trainer_class, config_class, description="")``."""


@hookspec
def register_evaluators(register: Any) -> None:
    """Add evaluators: ``register(name, factory, tasks_path=None, description="")``.

    ``tasks_path`` is a folder of lm-eval task YAMLs that the evaluator's tasks live in; it is
    added to ``lm_eval --include_path`` by ``cream tasks-path``.
    """


@hookspec
def register_samplers(register: Any) -> None:
    """Add generation backends: ``register(name, factory, description="")``.

    ``factory(**config)`` returns an object with ``generate(prompts, n, ...) -> list[list[str]]``.
    """


@hookspec
def register_methods(register: Any) -> None:
    """Add methods: ``register(method)`` with a :class:`cream_plugin.plugins.methods.Method`.

    A method names its reward source and the optional stages it runs; ``cream run --method
    NAME`` then runs it like a built-in.
    """
