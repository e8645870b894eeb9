"""AUCs with DeLong's variance: intervals that handle tied scores, and two correlated AUCs compared.

C takes a handful of levels (Kendall's tau over N = 3-5 responses), so its scores tie a lot;
Hanley and McNeil's formula assumes a continuous score. DeLong, DeLong and Clarke-Pearson
(1988) estimate the variance from each case's placement values with ties counted 1/2 (midranks,
computed as in Sun and Xu 2014). The interval is a Wald interval on the logit scale, so it stays
inside [0, 1]; the p-value against 0.5 is the tie-corrected Mann-Whitney test (its null
variance does not depend on the estimate); two measures scored on the same cases are compared
with DeLong's paired z-test.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from cream_plugin.errors import DataError
from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.intervals import LEVEL, z_value
from cream_plugin.instruments.power import mde_auc


def _cases(scores: object, positive: object) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2 or y.ndim != 1 or s.shape[1] != y.size:
        raise DataError(f"scores {s.shape} and labels {y.shape}: expected one score per case")
    if not np.isfinite(s).all():
        raise DataError("AUC scores: expected finite numbers (drop cases without a score)")
    return s, y


def placements(scores: object, positive: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per measure (rows): the AUC, each positive's V10 and each negative's V01 (DeLong).

    V10_i is the share of negatives a positive outscores (ties 1/2), V01_j the share of positives
    that outscore a negative; the AUC is the mean of either.
    """
    s, y = _cases(scores, positive)
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    all_ranks = np.apply_along_axis(stats.rankdata, 1, s)
    pos_ranks = np.apply_along_axis(stats.rankdata, 1, pos)
    neg_ranks = np.apply_along_axis(stats.rankdata, 1, neg)
    v10 = (all_ranks[:, y] - pos_ranks) / n
    v01 = 1 - (all_ranks[:, ~y] - neg_ranks) / m
    return v10.mean(axis=1), v10, v01


def _covariance(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((v10.shape[0],) * 2)
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((v01.shape[0],) * 2)
    return s10 / m + s01 / n


def delong_auc(scores: object, positive: object, level: float = LEVEL) -> Estimate:
    """AUC of ``scores`` for the boolean ``positive`` (ties 1/2) with DeLong's logit interval."""
    s, y = _cases(scores, positive)
    if s.shape[0] != 1:
        raise DataError("delong_auc takes one score per case; use compare_aucs for two")
    n1, n2 = int(y.sum()), int((~y).sum())
    method = f"DeLong {level:.0%} (logit scale), Mann-Whitney test vs 0.5"
    if n1 == 0 or n2 == 0:
        return undefined(f"{n1} positive and {n2} negative cases: AUC needs both",
                         n=n1 + n2, method=method)
    a_all, v10, v01 = placements(s, y)
    a = float(a_all[0])
    var = float(_covariance(v10, v01)[0, 0])
    test = stats.mannwhitneyu(s[0, y], s[0, ~y], alternative="two-sided", method="asymptotic")
    reason = f"{n1} positive and {n2} negative cases"
    low = high = math.nan
    if 0 < a < 1 and var > 0:
        half = z_value(level) * math.sqrt(var) / (a * (1 - a))
        centre = math.log(a / (1 - a))
        low, high = 1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half)))
    else:
        reason += "; complete separation or one score level: no interval"
    p = float(test.pvalue) if np.isfinite(test.pvalue) else 1.0
    return Estimate(a, low, high, n=n1 + n2, p_value=p, method=method, reason=reason,
                    mde=mde_auc(n1, n2))


def compare_aucs(scores_a: object, scores_b: object, positive: object,
                 level: float = LEVEL) -> Estimate:
    """AUC(b) - AUC(a) for two measures scored on the same cases, DeLong's paired z-test and
    Wald interval (the covariance of the two AUCs comes from the same placement values)."""
    a_scores = np.asarray(scores_a, dtype=np.float64)
    b_scores = np.asarray(scores_b, dtype=np.float64)
    if a_scores.shape != b_scores.shape:
        raise DataError(f"two measures with {a_scores.shape} and {b_scores.shape} scores: "
                        "expected the same cases")
    s, y = _cases(np.vstack([a_scores, b_scores]), positive)
    n1, n2 = int(y.sum()), int((~y).sum())
    method = f"DeLong paired test, Wald {level:.0%} interval"
    if n1 < 2 or n2 < 2:
        return undefined(f"{n1} positive and {n2} negative cases: need 2 of each", n=n1 + n2,
                         method=method)
    aucs, v10, v01 = placements(s, y)
    cov = _covariance(v10, v01)
    d = float(aucs[1] - aucs[0])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 0:
        return Estimate(d, n=n1 + n2, p_value=1.0 if d == 0 else math.nan, method=method,
                        reason="the two measures rank every case alike: no variance")
    se = math.sqrt(var)
    half = z_value(level) * se
    p = float(2 * stats.norm.sf(abs(d) / se))
    za, zb = z_value(0.95), float(stats.norm.ppf(0.8))
    return Estimate(d, d - half, d + half, n=n1 + n2, p_value=p, method=method,
                    reason=f"{n1} positive and {n2} negative cases", mde=(za + zb) * se)
