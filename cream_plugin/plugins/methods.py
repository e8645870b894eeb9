"""Methods: which reward ranks the responses, whether C regularises training, which trainer
trains, and which extra stages run. Built-ins and third-party methods register through the
``register_methods`` hook; ``cream run --method NAME`` runs any registered one.

A method is declarative (a reward role and flags: the stage graph builds its iteration), or it
builds its own iteration with ``build_iteration`` from the public pieces that
:mod:`cream_plugin.plugins.api` exports (docs/plugins.md walks through ``spin``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cream_plugin.config import RunConfig
from cream_plugin.config_checks import coerce
from cream_plugin.errors import ConfigError

IterationBuilder = Callable[[Any, "Method", int], str]
"""``build_iteration(graph, method, t) -> key``: adds iteration t's stages of ``method`` to
``graph`` (a :class:`cream_plugin.loop.graph.StageGraph`) and returns the checkpoint key of
the model it trains, ``graph.checkpoint(method.name, t + 1)``."""

REWARD_ROLES = ("main", "judge", "oracle")
"""Reward sources read from the config: rewarder.name, rewarder.judge, rewarder.oracle."""


@dataclass(frozen=True)
class Method:
    """A row of the CREAM paper's Table 1, or any other recipe over the same stages.

    ``reward`` is a role (``main``, ``judge``, ``oracle``: the rewarder the config names for
    it) or a registered rewarder's name; None stops after SFT. ``regularised`` weighs each
    pair by the ranking consistency C of M_t and M_{t-1}. ``trainer`` overrides the config's
    ``training.trainer``; ``trainer_settings`` are config sections that feed that trainer.
    ``internal_consistency`` adds SCIR's agreement stage (needs an implicit reward).
    ``regularise_from`` is the first iteration whose pairs C weighs; earlier iterations of a
    regularised method train plain DPO (C is still measured and reported).
    """

    name: str
    reward: str | None
    regularised: bool = False
    trainer: str | None = None
    trainer_settings: tuple[str, ...] = ()
    internal_consistency: bool = False
    description: str = ""
    regularise_from: int = 1
    build_iteration: IterationBuilder | None = None
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def trains(self) -> bool:
        """Whether the method trains models (every method but SFT only)."""
        return self.reward is not None or self.build_iteration is not None

    def regularised_at(self, iteration: int) -> bool:
        """Whether iteration ``iteration``'s pairs are weighted by C."""
        return self.regularised and iteration >= self.regularise_from

    def rewarder_name(self, config: RunConfig) -> str | None:
        """The registered rewarder that ranks this method's responses."""
        if self.reward is None:
            return None
        roles = {
            "main": config.rewarder.name,
            "judge": config.rewarder.judge,
            "oracle": config.rewarder.oracle,
        }
        return roles.get(self.reward, self.reward)

    def trainer_name(self, config: RunConfig) -> str:
        return self.trainer or config.training.trainer


def method_settings(config: RunConfig, method: Method) -> dict[str, Any]:
    """The method's options: its defaults, overridden by ``method_options.<name>`` of the run.
    An unknown option or a value of another type than its default is a ConfigError naming the
    dotted key. Defaults are None, bool, int, float or str; a None default takes any value (the
    builder checks it)."""
    given = config.method_options.get(method.name) or {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"method_options.{method.name}: expected a mapping of options, got "
                          f"{given!r}")
    settings = dict(method.options)
    for key, value in given.items():
        dotted = f"method_options.{method.name}.{key}"
        if key not in method.options:
            known = ", ".join(method.options) or "none"
            raise ConfigError(f"unknown key {dotted!r}; method {method.name!r} has the options: "
                              f"{known}")
        default = method.options[key]
        settings[key] = value if default is None else coerce(value, type(default), dotted)
    return settings


def get_method(name: str) -> Method:
    from cream_plugin.plugins.registry import UnknownComponentError, get_component

    try:
        method: Method = get_component("method", name).obj
    except UnknownComponentError as exc:
        raise ConfigError(f"methods: {exc}") from None
    return method


def resolve_methods(names: list[str]) -> dict[str, Method]:
    """The configured methods by name, in order; an unknown one lists the known ones."""
    return {name: get_method(name) for name in names}
