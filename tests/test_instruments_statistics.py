"""The statistics library against independent computations (scipy, sklearn, by hand, simulation),
on hand-made cases and the edge cases a small run produces: 0-2 discordant items, tied scores,
2-3 seeds, proportions near 0 and 1."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from cream_plugin.instruments.multiple import holm
from cream_plugin.instruments.paired import mcnemar_difference, mcnemar_exact, paired_continuous
from cream_plugin.instruments.power import (
    mde_auc,
    mde_correlation,
    mde_mean,
    mde_proportion,
    mde_two_proportions,
)
from cream_plugin.instruments.power import mde_paired_binary as mde_mcnemar
from cream_plugin.instruments.roc import compare_aucs, delong_auc
from cream_plugin.instruments.seeds import across_seeds, proportion_across_seeds


# -- McNemar ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("a_only", "b_only", "n"), [(3, 11, 40), (9, 2, 100), (0, 6, 30),
                                                     (7, 7, 50)])
def test_mcnemar_interval_is_the_exact_binomial_interval_of_the_discordant_split(a_only, b_only,
                                                                                   n):
    e = mcnemar_difference(a_only, b_only, n)
    m = a_only + b_only
    ref = stats.binomtest(b_only, m).proportion_ci(0.95, method="exact")
    assert e.value == pytest.approx((b_only - a_only) / n)
    assert e.low == pytest.approx(m / n * (2 * ref.low - 1))
    assert e.high == pytest.approx(m / n * (2 * ref.high - 1))
    assert e.p_value == pytest.approx(stats.binomtest(b_only, m, 0.5).pvalue)
    assert e.low <= e.value <= e.high


def test_mcnemar_with_zero_one_two_discordant_items():
    none = mcnemar_difference(0, 0, 40)
    assert none.value == 0 and not none.has_interval and none.p_value == 1.0
    assert "agree on all 40 items" in none.reason
    assert 0 < none.mde < 1  # still says what could have been detected
    one = mcnemar_difference(0, 1, 40)
    assert one.low < 0 < one.high and one.high == pytest.approx(1 / 40)
    assert one.p_value == 1.0 and "conditional" in one.reason
    two = mcnemar_exact([1, 1, 0, 0, 1], [0, 0, 0, 0, 1])
    assert (two.a_only, two.b_only) == (2, 0)
    assert two.p_value == pytest.approx(0.5)  # 2 * 0.5^2
    # All discordant items favour a: the interval ends at the observed difference and reaches
    # past 0, since two items cannot rule out no difference.
    assert two.difference is not None
    assert two.difference.low == pytest.approx(two.difference.value) == -0.4
    assert two.difference.high > 0


# -- paired continuous -------------------------------------------------------------------------
def test_paired_continuous_t_interval_and_exact_wilcoxon_by_enumeration():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    d = np.array([0.3, -0.1, 0.8, 1.2, 0.45, -0.6, 0.9, 1.5])
    e = paired_continuous(a, a + d)
    ref = stats.ttest_rel(a + d, a).confidence_interval(0.95)
    assert (e.low, e.high) == pytest.approx((ref.low, ref.high))
    ranks = stats.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    sums = [sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product((0, 1), repeat=d.size)]
    centre = ranks.sum() / 2
    tail = np.mean([abs(x - centre) >= abs(observed - centre) - 1e-9 for x in sums])
    assert e.p_value == pytest.approx(tail)
    assert paired_continuous([1.0, 2.0], [1.0, 2.0]).p_value == 1.0


# -- AUC -----------------------------------------------------------------------------------
def _delong_by_hand(scores, labels):
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0
    v10 = np.array([np.mean([psi(x, y) for y in neg]) for x in pos])
    v01 = np.array([np.mean([psi(x, y) for x in pos]) for y in neg])
    return v10, v01


def test_delong_auc_with_ties_against_sklearn_and_a_direct_computation():
    # C of 11 pairs on a handful of tied levels, like a 3-response Kendall C.
    c = [0.0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 1.0, 1 / 3, 2 / 3, 1.0, 0.0]
    right = [0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1]
    e = delong_auc(c, right)
    assert e.value == pytest.approx(roc_auc_score(right, c))
    v10, v01 = _delong_by_hand(c, right)
    var = v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size
    logit, half = math.log(e.value / (1 - e.value)), 1.959964 * math.sqrt(var) / (
        e.value * (1 - e.value))
    assert e.low == pytest.approx(1 / (1 + math.exp(-(logit - half))), abs=1e-6)
    assert e.high == pytest.approx(1 / (1 + math.exp(-(logit + half))), abs=1e-6)
    assert 0 < e.low < e.value < e.high < 1
    mw = stats.mannwhitneyu([x for x, y in zip(c, right, strict=True) if y],
                            [x for x, y in zip(c, right, strict=True) if not y],
                            method="asymptotic")
    assert e.p_value == pytest.approx(mw.pvalue)
    assert e.mde == pytest.approx(mde_auc(6, 5))


def test_delong_auc_at_complete_separation_has_no_interval():
    e = delong_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    assert e.value == 1.0 and not e.has_interval and "separation" in e.reason


def test_compare_aucs_matches_the_delong_covariance_by_hand():
    rng = np.random.default_rng(4)
    y = rng.random(40) < 0.5
    a = np.round(y + rng.normal(0, 1.0, 40), 1)
    b = np.round(y + rng.normal(0, 0.6, 40), 0)  # coarse: many ties
    e = compare_aucs(a, b, y)
    va10, va01 = _delong_by_hand(a, y)
    vb10, vb01 = _delong_by_hand(b, y)
    cov10 = np.cov(np.vstack([va10, vb10]))
    cov01 = np.cov(np.vstack([va01, vb01]))
    s = cov10 / va10.size + cov01 / va01.size
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    assert e.value == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a))
    assert e.p_value == pytest.approx(2 * stats.norm.sf(abs(e.value) / math.sqrt(var)))
    same = compare_aucs(a, a, y)
    assert same.value == 0 and same.p_value == 1.0 and not same.has_interval


# -- across seeds ------------------------------------------------------------------------------
def test_per_seed_differences_across_two_and_three_seeds():
    # The issue's recomputation: claim 2's per-seed C differences and the length headline.
    for diffs, p in (([0.12, -0.66, -0.37], 0.32), ([14, 99, 91], 0.13)):
        e = across_seeds(diffs)
        ref = stats.ttest_1samp(diffs, 0.0)
        # (the issue rounded the per-seed differences, so its p agrees to 0.01)
        assert e.p_value == pytest.approx(ref.pvalue) and e.p_value == pytest.approx(p, abs=0.01)
        ci = ref.confidence_interval(0.95)
        assert (e.low, e.high) == pytest.approx((ci.low, ci.high)) and e.n == 3
    two = across_seeds([0.02, 0.05])
    assert two.n == 2 and two.low < two.value < two.high and two.mde > 0
    # Seeds that agree exactly give no zero-width interval, p-value or MDE.
    same = across_seeds([0.0, 0.0])
    assert same.value == 0 and not same.has_interval and math.isnan(same.p_value)
    assert math.isnan(same.mde) and "no spread" in same.reason


@pytest.mark.parametrize("counts", [[(0, 40), (1, 40)], [(39, 40), (40, 40), (38, 40)],
                                    [(2, 11), (9, 11), (5, 11)]])
def test_proportions_across_seeds_stay_inside_zero_one(counts):
    e = proportion_across_seeds(counts, chance=0.5)
    logits = [math.log((k + 0.5) / (n - k + 0.5)) for k, n in counts]
    low, high = stats.t.interval(0.95, len(logits) - 1, loc=np.mean(logits),
                                 scale=stats.sem(logits))
    assert e.value == pytest.approx(1 / (1 + math.exp(-np.mean(logits))))
    assert (e.low, e.high) == pytest.approx((1 / (1 + math.exp(-low)), 1 / (1 + math.exp(-high))))
    assert 0 < e.low < e.value < e.high < 1
    assert e.p_value == pytest.approx(stats.ttest_1samp(logits, 0.0).pvalue)
    assert f"pooled {sum(k for k, _ in counts)}/{sum(n for _, n in counts)}" in e.reason


def test_proportion_across_seeds_with_equal_counts_has_no_zero_width_interval():
    e = proportion_across_seeds([(0, 40), (0, 40)])
    assert e.value == 0 and not e.has_interval and "same count" in e.reason


# -- Holm ------------------------------------------------------------------------------------
def test_holm_by_hand():
    got = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert got[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(got[4])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.02, 0.04]) == pytest.approx([0.04, 0.04])
    assert holm([]) == []


# -- power -----------------------------------------------------------------------------------
def test_mde_mean_gives_80_percent_power_by_simulation():
    rng = np.random.default_rng(0)
    for n in (3, 5, 12):
        d = mde_mean(1.0, n)
        x = rng.normal(d, 1.0, size=(200_000, n))
        t = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(n))
        power = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
        assert power == pytest.approx(0.8, abs=0.005)
    assert math.isnan(mde_mean(1.0, 1)) and math.isnan(mde_mean(0.0, 3))


def test_proportion_mdes_give_about_80_percent_power_by_simulation():
    rng = np.random.default_rng(1)
    n, d = 200, mde_proportion(200, 0.5)
    k = rng.binomial(n, 0.5 + d, 20_000)
    z = (k / n - 0.5) / math.sqrt(0.25 / n)
    assert np.mean(np.abs(z) > 1.959964) == pytest.approx(0.8, abs=0.02)
    n1 = n2 = 300
    d2 = mde_two_proportions(n1, n2, 0.3)
    k1, k2 = rng.binomial(n1, 0.3, 20_000), rng.binomial(n2, 0.3 + d2, 20_000)
    bar = (k1 + k2) / (n1 + n2)
    z2 = (k2 / n2 - k1 / n1) / np.sqrt(bar * (1 - bar) * (1 / n1 + 1 / n2))
    assert np.mean(np.abs(z2) > 1.959964) == pytest.approx(0.8, abs=0.02)


def test_mcnemar_mde_by_simulation_and_its_discordance_floor():
    rng = np.random.default_rng(2)
    n, discordance = 300, 0.2
    d = mde_mcnemar(n, discordance)
    cells = rng.multinomial(n, [(discordance - d) / 2, (discordance + d) / 2,
                                1 - discordance], 20_000)
    a_only, b_only = cells[:, 0], cells[:, 1]
    z = (b_only - a_only) / np.sqrt(np.maximum(a_only + b_only, 1))
    assert np.mean(np.abs(z) > 1.959964) == pytest.approx(0.8, abs=0.03)
    # No discordant item observed: the difference itself sets the discordance.
    assert mde_mcnemar(40, 0.0) == pytest.approx(mde_mcnemar(40, mde_mcnemar(
        40, 0.0)))
    assert mde_mcnemar(40, 0.0) < mde_mcnemar(40, 0.5)


def test_mde_auc_and_correlation_by_hand():
    z = 1.959964 + 0.841621
    assert mde_auc(50, 50) == pytest.approx(z * math.sqrt(101 / (12 * 2500)), abs=1e-5)
    assert mde_correlation(103) == pytest.approx(math.tanh(z / 10), abs=1e-5)
    assert math.isnan(mde_correlation(3)) and math.isnan(mde_auc(0, 4))
