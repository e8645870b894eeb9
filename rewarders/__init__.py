"""Built-in rewarders (implicit DPO reward, LLM-as-a-judge, external oracles) and their builder.

A rewarder factory declares what it needs by its parameter names. :func:`build_rewarder`
passes the shared resources a factory names (see :data:`RESOURCES`), loading each one only
when asked for, plus the user's ``options``. So a rewarder that needs no policy
(``answer-key``, ``oracle``) never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cream_plugin.registry import factory_parameters

RESOURCES: tuple[str, ...] = (
    "model", "tokenizer", "ref_model", "cache", "model_key", "ref_key", "batch_size", "seed",
    "progress",
)


def build_rewarder(
    name: str,
    resources: Mapping[str, Callable[[], Any]] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Build the rewarder registered as ``name`` (cream_plugin.registry.build's rules)."""
    from cream_plugin.registry import build

    return build("rewarder", name, resources, options)


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
