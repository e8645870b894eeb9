"""Confidence intervals and tests shared by the instruments (binomial, t, two proportions).

Written out from their formulas (Wilson 1927; the exact binomial test; Student's t; Newcombe
1998 method 10) so every number in the report has one documented definition; the tests check
them against scipy and statsmodels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.power import mde_proportion, mde_two_proportions

LEVEL = 0.95


def z_value(level: float) -> float:
    """The normal quantile of a two-sided interval at ``level`` (1.96 for 95%)."""
    return float(stats.norm.ppf(0.5 + level / 2))


def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (no continuity correction)."""
    if n <= 0:
        return math.nan, math.nan
    z = z_value(level)
    denom = n + z * z
    centre = (k + z * z / 2) / denom
    half = z / denom * math.sqrt(k * (n - k) / n + z * z / 4)
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_test(k: int, n: int, p0: float = 0.5) -> float:
    """Exact two-sided binomial test: P of outcomes no more likely than k under Bin(n, p0)."""
    if n <= 0:
        return math.nan
    pmf = stats.binom.pmf(np.arange(n + 1), n, p0)
    observed = pmf[k]
    # Relative tolerance so outcomes as likely as k (symmetric ones at p0 = 0.5) are counted.
    return float(min(1.0, pmf[pmf <= observed * (1 + 1e-7)].sum()))


def proportion(k: int, n: int, *, chance: float | None = None, level: float = LEVEL,
               what: str = "items") -> Estimate:
    """k/n with its Wilson interval; with ``chance``, the exact binomial test against it."""
    if n <= 0:
        return undefined(f"no {what}", method="Wilson")
    low, high = wilson_interval(k, n, level)
    p = binomial_test(k, n, chance) if chance is not None else math.nan
    method = f"Wilson {level:.0%}" + (f", exact binomial test vs {chance:g}" if chance is not None
                                      else "")
    mde = mde_proportion(n, chance) if chance is not None else math.nan
    return Estimate(k / n, low, high, n=n, p_value=p, method=method, mde=mde)


def t_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL,
               what: str = "values") -> Estimate:
    """Mean with Student's t interval (NaN dropped); p-value of the one-sample t-test vs 0."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return undefined(f"no {what}", method="t")
    mean = float(x.mean())
    if n == 1:
        return Estimate(mean, n=1, method="t", reason=f"one {what.rstrip('s')}: no interval")
    sd = float(x.std(ddof=1))
    if sd == 0:
        # A zero-width interval and p = 0 would claim certainty that n equal values cannot give.
        return Estimate(mean, n=n, method="t",
                        reason=f"all {n} {what} equal: no spread to build an interval from")
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return Estimate(mean, mean - half, mean + half, n=n, p_value=p, method=f"t {level:.0%}")


def proportion_difference(k1: int, n1: int, k2: int, n2: int,
                          level: float = LEVEL) -> Estimate:
    """p2 - p1 for two independent proportions with Newcombe's hybrid score interval.

    The interval treats every item as independent; responses drawn N per prompt are clustered,
    so for them it is somewhat too narrow (the docs say so).
    """
    if n1 <= 0 or n2 <= 0:
        return undefined("a proportion has no items", method="Newcombe")
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, level)
    l2, u2 = wilson_interval(k2, n2, level)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return Estimate(d, low, high, n=n1 + n2, method=f"Newcombe {level:.0%}",
                    mde=mde_two_proportions(n1, n2, p1))
