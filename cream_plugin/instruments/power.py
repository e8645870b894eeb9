"""Minimum detectable effects: the smallest true difference a test finds 80% of the time.

A "not significant" figure means little without the difference its n could have detected, so
every instrument states one (two-sided alpha 0.05, power 0.80, on the figure's own scale) and the
summary reads "no difference larger than X". Formulas: McNemar's paired proportions (Connor
1987), one proportion against a reference and two independent proportions (normal
approximation), an AUC against 0.5 (the Mann-Whitney null variance), a correlation (Fisher's z)
and a mean difference over replicates (Student's t, exact through the noncentral t).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import integrate, optimize, stats

ALPHA = 0.05
POWER = 0.80
NAN = float("nan")


def _z(alpha: float = ALPHA, power: float = POWER) -> tuple[float, float]:
    return float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))


def _smallest(excess: Callable[[float], float], top: float) -> float:
    """The root in (0, top] of ``excess`` (positive while the effect is too small to detect);
    NaN when even ``top`` is not detectable."""
    low = 1e-9
    if excess(top) > 0:
        return NAN
    if excess(low) <= 0:
        return low
    return float(optimize.brentq(excess, low, top, xtol=1e-10))


def mde_paired_binary(n: int, discordance: float, alpha: float = ALPHA,
                      power: float = POWER) -> float:
    """Smallest |p_b - p_a| McNemar's test detects on ``n`` paired items (Connor 1987).

    ``discordance`` is the share of items the two models score differently (use the observed
    one); since a difference d needs at least d discordant items, the discordance used for each
    candidate d is max(discordance, d), so the answer is defined even when no item differed.
    """
    if n <= 0:
        return NAN
    za, zb = _z(alpha, power)

    def excess(d: float) -> float:
        psi = max(discordance, d)
        return (za * math.sqrt(psi) + zb * math.sqrt(max(psi - d * d, 0.0))) / d - math.sqrt(n)

    return _smallest(excess, 1.0)


def _toward_half(p: float, d: float) -> float:
    """p moved by d toward (and past) 0.5: the alternative with the larger variance."""
    return p + d if p <= 0.5 else p - d


def mde_proportion(n: int, reference: float = 0.5, alpha: float = ALPHA,
                   power: float = POWER) -> float:
    """Smallest |p - reference| a test of one proportion of ``n`` items detects (normal
    approximation; the alternative on the side of 0.5, where the variance is larger)."""
    if n <= 0:
        return NAN
    za, zb = _z(alpha, power)

    def excess(d: float) -> float:
        p = _toward_half(reference, d)
        return (za * math.sqrt(reference * (1 - reference)) + zb * math.sqrt(p * (1 - p))) \
            / math.sqrt(n) - d

    return _smallest(excess, max(reference, 1 - reference))


def mde_two_proportions(n1: int, n2: int, p1: float, alpha: float = ALPHA,
                        power: float = POWER) -> float:
    """Smallest |p2 - p1| between independent samples of ``n1`` and ``n2`` items, the first at
    ``p1`` (normal approximation, pooled variance under the null)."""
    if n1 <= 0 or n2 <= 0 or not 0 <= p1 <= 1:
        return NAN
    za, zb = _z(alpha, power)

    def excess(d: float) -> float:
        p2 = _toward_half(p1, d)
        bar = (n1 * p1 + n2 * p2) / (n1 + n2)
        null = math.sqrt(bar * (1 - bar) * (1 / n1 + 1 / n2))
        alt = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
        return za * null + zb * alt - d

    return _smallest(excess, max(p1, 1 - p1))


def mde_auc(n_pos: int, n_neg: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest |AUC - 0.5| detectable with ``n_pos`` and ``n_neg`` cases (standard error of
    the Mann-Whitney statistic under the null, (n_pos + n_neg + 1) / (12 n_pos n_neg))."""
    if n_pos <= 0 or n_neg <= 0:
        return NAN
    za, zb = _z(alpha, power)
    return min(0.5, (za + zb) * math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg)))


def mde_correlation(n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest |rho| detectable among ``n`` independent pairs (Fisher's z)."""
    if n <= 3:
        return NAN
    za, zb = _z(alpha, power)
    return math.tanh((za + zb) / math.sqrt(n - 3))


def mde_mean(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest |mean| a two-sided one-sample (or paired) t-test detects with ``n`` replicates of
    standard deviation ``sd`` (power from the noncentral t; seeds: n = number of seeds)."""
    if n < 2 or not math.isfinite(sd) or sd <= 0:
        return NAN  # no spread observed: the data cannot say what is detectable
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))

    def shortfall(effect: float) -> float:
        # P(|T| > crit) for T = (Z + nc) / sqrt(V / df), V ~ chi2(df), integrated over V
        # (scipy's noncentral t returns NaN far in the tail for df = 1, i.e. two seeds).
        nc = effect * math.sqrt(n)

        def given(v: float) -> float:
            cut = crit * math.sqrt(v / df)
            return float((stats.norm.sf(cut - nc) + stats.norm.cdf(-cut - nc))
                         * stats.chi2.pdf(v, df))

        reach = integrate.quad(given, 0, np.inf, limit=200)[0]
        return power - reach

    high = 1.0
    while shortfall(high) > 0:
        high *= 2
    return float(optimize.brentq(shortfall, 1e-9, high, xtol=1e-12)) * sd
