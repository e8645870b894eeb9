"""Aggregation across seeds: the same config run under several seeds, mean ± 95% t-interval.

Seeds are the independent replicates of a whole run, so the interval says how much a figure
would move on a rerun, which no within-run interval captures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.intervals import LEVEL, t_interval


def across_seeds(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """Mean of one figure over seeds with Student's t interval (n = seeds; NaN values dropped)."""
    return t_interval(values, level=level, what="seeds")


def aggregate_seeds(rows: Iterable[Mapping[str, Any]], keys: Sequence[str],
                    value: str = "value", level: float = LEVEL
                    ) -> dict[tuple[Any, ...], Estimate]:
    """Group result rows (one per seed) by ``keys`` and aggregate ``value`` across seeds.

    E.g. rows of results.jsonl from several seeds, keys ("method", "iteration", "task",
    "metric"): one Estimate per model and metric.
    """
    groups: dict[tuple[Any, ...], list[float]] = {}
    for row in rows:
        raw = row.get(value)
        groups.setdefault(tuple(row[k] for k in keys), []).append(
            float(raw) if raw is not None else float("nan"))
    return {key: across_seeds(vals, level) for key, vals in groups.items()}
