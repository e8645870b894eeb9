"""Built-in rewarders (implicit DPO reward, LLM-as-a-judge, external oracles) and their builder.

A rewarder factory declares what it needs by its parameter names. :func:`build_rewarder`
passes the shared resources a factory names (see :data:`RESOURCES`), loading each one only
when asked for, plus the user's ``options``. So a rewarder that needs no policy
(``answer-key``, ``oracle``) never loads it.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cream_plugin.plugins.registry import factory_parameters

RESOURCES: tuple[str, ...] = (
    "model", "tokenizer", "ref_model", "cache", "model_key", "ref_key", "batch_size", "seed",
    "progress",
)


_LABELS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
"""Rewarders built by :func:`build_rewarder` -> "rewarder 'name' (plugin, origin)" for errors."""


def build_rewarder(
    name: str,
    resources: Mapping[str, Callable[[], Any]] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Build the rewarder registered as ``name`` (cream_plugin.plugins.registry.build's rules)."""
    from cream_plugin.plugins.registry import build, get_component

    rewarder = build("rewarder", name, resources, options)
    component = get_component("rewarder", name)
    with contextlib.suppress(TypeError):  # not weak-referenceable: errors name its class
        _LABELS[rewarder] = f"rewarder {name!r} (plugin {component.plugin!r}, {component.origin})"
    return rewarder


def rewarder_label(rewarder: Any, name: str | None = None) -> str:
    """How errors name a rewarder: its registered name, plugin and distribution when known."""
    try:
        known = _LABELS.get(rewarder)
    except TypeError:
        known = None
    if known:
        return known
    cls = type(rewarder)
    from cream_plugin.plugins.registry import components

    for comp in components("rewarder").values():  # a class registered as the factory
        if comp.obj is cls and (name is None or comp.name == name):
            return f"rewarder {comp.name!r} (plugin {comp.plugin!r}, {comp.origin})"
    where = f"{cls.__module__}.{cls.__qualname__}"
    if name:
        return f"rewarder {name!r} ({where}{_distribution(cls.__module__)})"
    return f"rewarder {where}{_distribution(cls.__module__)}"


def _distribution(module: str) -> str:
    from importlib.metadata import packages_distributions, version

    top = module.split(".")[0]
    names = packages_distributions().get(top) or []
    if not names:
        return ""
    try:
        return f", distribution {names[0]} {version(names[0])}"
    except Exception:  # metadata is only decoration for the message
        return f", distribution {names[0]}"


def score_rewarder(
    rewarder: Any,
    prompts: Sequence[Any],
    responses: Sequence[Sequence[str]],
    references: Sequence[str | None] | None = None,
    *,
    name: str | None = None,
) -> Any:
    """``rewarder.score``, checked: every way a plugin can fail is a :class:`RewarderError`.

    ``references`` go to rewarders whose ``score`` accepts them. The result must be a
    ``RewardResult`` whose rewards are a numeric (P, N) table; NaN is allowed (the documented
    "could not score this response" marker), infinities are not. An exception inside ``score``
    is reported with the rewarder's name, plugin and distribution (``--debug`` shows the
    original traceback).
    """
    import numpy as np

    from cream_plugin.errors import CreamError, RewarderError
    from cream_plugin.plugins.interfaces import RewardResult

    label = rewarder_label(rewarder, name)
    prompts = list(prompts)
    lists = [list(r) for r in responses]
    try:
        if references is not None and "references" in factory_parameters(rewarder.score):
            result = rewarder.score(prompts, lists, references=references)
        else:
            result = rewarder.score(prompts, lists)
    except CreamError:
        raise
    except Exception as exc:
        raise RewarderError(
            f"{label}: score() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, RewardResult):
        raise RewarderError(f"{label}: score() returned {type(result).__name__}; expected a "
                            "cream_plugin.plugins.interfaces.RewardResult")
    try:
        rewards = np.asarray(result.rewards, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RewarderError(f"{label}: rewards are not a numeric table ({exc})") from None
    widths = {len(r) for r in lists}
    expected = (len(prompts), widths.pop()) if len(widths) == 1 else None
    if rewards.ndim != 2 or rewards.shape[0] != len(prompts) or (
            expected is not None and rewards.shape != expected):
        want = f"({expected[0]}, {expected[1]})" if expected else f"({len(prompts)}, N)"
        raise RewarderError(f"{label}: rewards have shape {rewards.shape}; expected {want} "
                            "(prompts x responses)")
    infinite = np.isinf(rewards)
    if infinite.any():
        i, j = (int(v) for v in np.argwhere(infinite)[0])
        raise RewarderError(
            f"{label}: {int(infinite.sum())} infinite reward(s), first at prompt {i}, response "
            f"{j} ({rewards[i, j]}); use NaN for a response that could not be scored")
    result.rewards = rewards
    return result
