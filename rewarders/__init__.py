"""Built-in rewarders (implicit DPO reward, LLM-as-a-judge, external oracles) and their builder.

A rewarder factory declares what it needs by its parameter names. :func:`build_rewarder`
passes the shared resources a factory names (see :data:`RESOURCES`), loading each one only
when asked for, plus the user's ``options``. So a rewarder that needs no policy
(``answer-key``, ``oracle``) never loads it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

RESOURCES: tuple[str, ...] = (
    "model", "tokenizer", "ref_model", "cache", "model_key", "ref_key", "batch_size", "seed",
    "progress",
)


def factory_parameters(factory: Callable[..., Any]) -> set[str]:
    """Names of the keyword parameters a factory accepts."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return set()
    return {name for name, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_rewarder(
    name: str,
    resources: Mapping[str, Callable[[], Any]] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Build the rewarder registered as ``name``.

    ``resources`` maps a resource name to a zero-argument loader, called only when the factory
    has a parameter of that name; ``options`` are passed as given (a wrong one is the factory's
    TypeError, reported with the rewarder's name).
    """
    from cream_plugin.errors import ConfigError
    from cream_plugin.registry import get_component

    factory = get_component("rewarder", name).obj
    wanted = factory_parameters(factory)
    kwargs: dict[str, Any] = {}
    for key, load in (resources or {}).items():
        if key in wanted and key not in (options or {}):
            kwargs[key] = load()
    kwargs.update(options or {})
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"rewarder {name!r}: bad options {sorted(options or {})}: {exc}") from exc


def score_rewarder(
    rewarder: Any,
    prompts: Sequence[Any],
    responses: Sequence[Sequence[str]],
    references: Sequence[str | None] | None = None,
) -> Any:
    """``rewarder.score``, passing ``references`` to rewarders whose ``score`` accepts them."""
    if references is not None and "references" in factory_parameters(rewarder.score):
        return rewarder.score(list(prompts), [list(r) for r in responses], references=references)
    return rewarder.score(list(prompts), [list(r) for r in responses])
