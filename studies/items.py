"""Paired comparisons of two models on the same benchmark items, seed by seed.

Within a seed both models answer the same seeded sample of items: 0/1 scores get McNemar's
exact test (its difference b - a and interval), other scores (e.g. answer length) the mean of
the per-item differences. The per-seed differences are then averaged over seeds with a
t-interval (n = seeds); the per-seed figures are kept for the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.paired import mcnemar_exact
from cream_plugin.instruments.seeds import across_seeds
from studies.folder import item_metrics

Model = tuple[str, int]


@dataclass(frozen=True)
class ItemComparison:
    """b - a over seeds, with each seed's difference (McNemar's for 0/1 scores) and items."""

    across: Estimate
    per_seed: list[Estimate]
    items: list[int]

    def seeds_text(self, scale: str = "points") -> str:
        parts = []
        for e, n in zip(self.per_seed, self.items, strict=True):
            v = f"{100 * e.value:+.1f}" if scale == "points" else f"{e.value:+.3g}"
            p = f", p {e.p_value:.2g}" if np.isfinite(e.p_value) else ""
            parts.append(f"{v} ({n} items{p})")
        return "; ".join(parts) or "n/a"


def scores(run: Path, model: Model, tasks: Sequence[str], metric: str) -> dict[tuple[str, int],
                                                                             float]:
    table = item_metrics(run, *model)
    return {(task, doc): m[metric] for task in tasks for doc, m in table.get(task, {}).items()
            if metric in m and np.isfinite(m[metric])}


def compare(runs: list[Path], a: Model, b: Model, tasks: Sequence[str], metric: str
            ) -> ItemComparison:
    per_seed, items = [], []
    for run in runs:
        sa, sb = scores(run, a, tasks, metric), scores(run, b, tasks, metric)
        common = [k for k in sa if k in sb]
        if not common:
            continue
        x, y = [sa[k] for k in common], [sb[k] for k in common]
        if set(x) | set(y) <= {0.0, 1.0}:
            diff = mcnemar_exact(x, y).difference
        else:
            d = np.subtract(y, x)
            diff = Estimate(float(d.mean()), n=len(d))
        if diff is not None:
            per_seed.append(diff)
            items.append(len(common))
    return ItemComparison(across_seeds([e.value for e in per_seed]), per_seed, items)
