"""The typed record of one run's instruments, which the summary and the renderers read.

The pipeline (or a user) fills an :class:`Evidence` with rows per method and iteration;
:meth:`Evidence.to_dict` / :meth:`Evidence.from_dict` round-trip it through JSON (NaN as null).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.informativeness import BinAccuracy
from cream_plugin.instruments.movement import Movement
from cream_plugin.instruments.paired import PairedComparison


@dataclass
class PoolAccuracyRow:
    """The policy's own accuracy on the iteration's sampled responses (gold-answer prompts)."""

    method: str
    iteration: int
    accuracy: Estimate


@dataclass
class SamePromptPoolRow:
    """M_t against M_(t+1) on the same prompts (iteration t+1's): each one's pool accuracy and
    the mean per-prompt difference in share correct (``iteration``: t)."""

    method: str
    iteration: int
    old: Estimate
    new: Estimate
    difference: Estimate


@dataclass
class RewardQualityRow:
    """Label accuracy of one reward's best-vs-worst pairs (``reward``: "r_t", "judge", ...)."""

    method: str
    iteration: int
    reward: str
    accuracy: Estimate
    pairs: int = 0
    discordant_pairs: int = 0
    # Over all within-prompt (correct, wrong) pairs, not only best vs worst.
    auc: Estimate = field(default_factory=lambda: undefined("not measured"))


@dataclass
class InformativenessRow:
    """Whether C tracks label correctness, on the pairs the method trained on."""

    method: str
    iteration: int
    auc: Estimate
    soft: Estimate
    hard: Estimate
    difference: Estimate
    bins: list[BinAccuracy] = field(default_factory=list)


@dataclass
class BiasRow:
    """Within-prompt Spearman of a reward with response length and with duplicate count."""

    method: str
    iteration: int
    reward: str
    length: Estimate
    duplicates: Estimate


@dataclass
class IdenticalRow:
    """Share of prompts whose N sampled responses are all the same text."""

    method: str
    iteration: int
    share: Estimate


@dataclass
class MovementRow:
    """How far M_t moved to M_(t+1), and the DPO log's mean margin and reward accuracy."""

    method: str
    iteration: int
    movement: Movement
    margins: Estimate
    accuracies: Estimate


@dataclass
class ComparisonRow:
    """Model b against model a on the same benchmark items (``model_*``: e.g. "cream M2")."""

    task: str
    metric: str
    model_a: str
    model_b: str
    comparison: PairedComparison


@dataclass
class SeedRow:
    """A figure aggregated over seeds; with ``chance`` set it is tested against that value."""

    label: str
    quantity: str
    estimate: Estimate
    chance: float | None = None


@dataclass
class SeedValue:
    """One seed's estimate of a comparison (within-seed: paired on that seed's items only)."""

    seed: int
    estimate: Estimate


@dataclass
class SeedComparisonRow:
    """A comparison made within each seed, then across seeds: ``across`` is the mean of the
    per-seed differences with a t-interval over seeds; ``plot`` its forest plot, if drawn."""

    task: str
    metric: str
    model_a: str
    model_b: str
    per_seed: list[SeedValue]
    across: Estimate
    plot: str = ""


def last_iterations(labels: Iterable[str]) -> dict[str, int]:
    """Method -> its last model's iteration, from model labels such as "cream M3"."""
    last: dict[str, int] = {}
    for label in labels:
        method, it = label.rsplit(" M", 1)
        last[method] = max(last.get(method, 0), int(it))
    return last


def is_headline(model_a: str, model_b: str, last: dict[str, int]) -> bool:
    """The comparisons a report is about: each method's last model against SFT's M1, and CREAM's
    last model against its no-RC ablation's. The others are exploratory."""
    ma, mb = model_a.rsplit(" M", 1), model_b.rsplit(" M", 1)
    final_b = last.get(mb[0]) == int(mb[1])
    if model_a == "sft M1":
        return final_b
    return final_b and last.get(ma[0]) == int(ma[1]) and {ma[0], mb[0]} == {"cream",
                                                                           "cream-no-rc"}


@dataclass
class Evidence:
    """Every instrument's rows for one run (any list may be empty)."""

    pool_accuracy: list[PoolAccuracyRow] = field(default_factory=list)
    same_prompt_pool: list[SamePromptPoolRow] = field(default_factory=list)
    reward_quality: list[RewardQualityRow] = field(default_factory=list)
    informativeness: list[InformativenessRow] = field(default_factory=list)
    biases: list[BiasRow] = field(default_factory=list)
    identical: list[IdenticalRow] = field(default_factory=list)
    movement: list[MovementRow] = field(default_factory=list)
    comparisons: list[ComparisonRow] = field(default_factory=list)
    seeds: list[SeedRow] = field(default_factory=list)
    seed_comparisons: list[SeedComparisonRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dicts; NaN becomes None."""
        return typing.cast(dict[str, Any], _plain(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        """Inverse of :meth:`to_dict`; a malformed record names the field."""
        return typing.cast(Evidence, _build(cls, data, "evidence"))


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _build(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _build(args[0], value, where)
    if origin is list:
        if not isinstance(value, list):
            raise DataError(f"{where}: expected a list")
        (item,) = typing.get_args(tp)
        return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise DataError(f"{where}: expected an object")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _build(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DataError(f"{where}: missing field {f.name!r}")
        return typing.cast(Any, tp)(**kwargs)
    if tp is float:
        return math.nan if value is None else float(value)
    if tp is int:
        return int(value)
    if tp is str:
        return str(value)
    return value
