"""Seeds as the replicates: each figure and each paired comparison per seed, then across seeds.

A seed reruns the whole pipeline (prompt pool, sampling, training), so only the spread between
seeds says how much a figure would move on a rerun; prompts or items pooled over seeds are not
independent replicates. Comparisons are made within each seed (paired on its items or prompts),
and their per-seed differences are summarised by their mean with a t-interval over seeds.
Proportions get the interval on the logit scale, so it stays inside [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.intervals import LEVEL, t_interval
from cream_plugin.instruments.power import mde_mean


def across_seeds(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """Mean of one figure (or of per-seed paired differences) over seeds with Student's t
    interval and t-test against 0 (n = seeds; NaN dropped); ``mde`` from the observed sd."""
    est = t_interval(values, level=level, what="seeds")
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2 or not est.has_interval:
        return est
    return Estimate(est.value, est.low, est.high, n=est.n, p_value=est.p_value,
                    method=f"t over seeds {level:.0%}", reason=est.reason,
                    mde=mde_mean(float(x.std(ddof=1)), int(x.size)))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def proportion_across_seeds(counts: Sequence[tuple[int, int]], level: float = LEVEL,
                            chance: float | None = None) -> Estimate:
    """A proportion measured in each seed as (successes, trials): the back-transformed mean of
    the per-seed logits (k + 1/2) / (n + 1), with its t-interval over seeds on the logit scale,
    so the interval stays inside [0, 1] near 0 and 1. The value is therefore the seed-typical
    proportion (inverse logit of the mean logit), not the pooled one; ``reason`` states the
    pooled k/n and the between-seed sd of the proportions. With one seed, or every seed at the
    same count, the value is that k/n and there is no interval. With ``chance``, the p-value is the
    t-test over seeds of the logits against logit(chance)."""
    rows = [(int(k), int(n)) for k, n in counts if n > 0]
    method = f"t over seeds {level:.0%} on the logit scale"
    if not rows:
        return undefined("no seed measured it", method=method)
    logits = np.array([_logit((k + 0.5) / (n + 1)) for k, n in rows])
    shares = np.array([k / n for k, n in rows])
    pooled_k, pooled_n = sum(k for k, _ in rows), sum(n for _, n in rows)
    sd = float(shares.std(ddof=1)) if len(rows) > 1 else math.nan
    reason = (f"pooled {pooled_k}/{pooled_n}; between-seed sd "
              f"{'–' if math.isnan(sd) else f'{100 * sd:.1f} points'}")
    centre = float(logits.mean())
    if len(rows) == 1:
        return Estimate(shares[0], n=1, method=method, reason=reason + "; one seed")
    se = float(logits.std(ddof=1)) / math.sqrt(len(rows))
    if se == 0:
        return Estimate(pooled_k / pooled_n, n=len(rows), method=method,
                        reason=reason + "; every seed gave the same count: no interval")
    half = float(stats.t.ppf(0.5 + level / 2, len(rows) - 1)) * se
    p = math.nan
    if chance is not None:
        shift = centre - _logit(chance)
        p = float(2 * stats.t.sf(abs(shift) / se, len(rows) - 1))
    return Estimate(_expit(centre), _expit(centre - half), _expit(centre + half),
                    n=len(rows), p_value=p, method=method, reason=reason,
                    mde=mde_mean(sd, len(rows)))


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
