"""Intervals and tests of the instruments against scipy and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.intervals import (
    binomial_test,
    proportion,
    proportion_difference,
    t_interval,
    wilson_interval,
)

CASES = [(0, 1), (1, 1), (0, 10), (3, 10), (5, 10), (10, 10), (17, 40), (123, 250), (1, 1000)]


@pytest.mark.parametrize(("k", "n"), CASES)
def test_wilson_matches_scipy(k, n):
    ci = stats.binomtest(k, n).proportion_ci(method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_matches_statsmodels():
    proportion_confint = pytest.importorskip("statsmodels.stats.proportion").proportion_confint
    for k, n in CASES:
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-12)


@pytest.mark.parametrize("p0", [0.5, 0.3, 0.9])
@pytest.mark.parametrize(("k", "n"), CASES)
def test_binomial_test_matches_scipy(k, n, p0):
    assert binomial_test(k, n, p0) == pytest.approx(stats.binomtest(k, n, p0).pvalue, rel=1e-9)


def test_proportion_with_chance_and_without_items():
    e = proportion(7, 10, chance=0.5)
    assert e.value == 0.7 and e.n == 10
    assert e.p_value == pytest.approx(stats.binomtest(7, 10).pvalue)
    assert (e.low, e.high) == pytest.approx(wilson_interval(7, 10))
    assert math.isnan(proportion(3, 10).p_value)
    empty = proportion(0, 0, what="pairs")
    assert not empty.defined and empty.reason == "no pairs" and empty.n == 0


def test_t_interval_matches_scipy():
    x = np.array([0.31, 0.35, 0.29, 0.40, 0.33])
    e = t_interval(x)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (e.value, e.low, e.high, e.n) == pytest.approx((x.mean(), low, high, 5))
    assert e.p_value == pytest.approx(stats.ttest_1samp(x, 0.0).pvalue)


def test_t_interval_drops_nan_and_handles_one_or_no_value():
    assert t_interval([1.0, np.nan, 3.0]).value == 2.0
    one = t_interval([0.4], what="seeds")
    assert one.value == 0.4 and not one.has_interval and "one seed" in one.reason
    none = t_interval([np.nan], what="seeds")
    assert not none.defined and none.reason == "no seeds"
    constant = t_interval([0.25, 0.25, 0.25])
    # Equal values: no zero-width interval and no p = 0 (the old behaviour claimed certainty).
    assert constant.value == 0.25 and not constant.has_interval
    assert np.isnan(constant.p_value) and "no spread" in constant.reason


def test_proportion_difference_matches_statsmodels_newcombe():
    sm = pytest.importorskip("statsmodels.stats.proportion")
    for k1, n1, k2, n2 in [(30, 100, 45, 100), (5, 20, 5, 40), (0, 10, 10, 10), (50, 640, 70, 640)]:
        e = proportion_difference(k1, n1, k2, n2)
        # statsmodels gives p1 - p2 of its first argument; ours is p2 - p1 (later minus earlier).
        low, high = sm.confint_proportions_2indep(k2, n2, k1, n1, method="newcomb",
                                                   compare="diff")
        assert e.value == pytest.approx(k2 / n2 - k1 / n1)
        assert (e.low, e.high) == pytest.approx((low, high), abs=1e-9)
    assert not proportion_difference(0, 0, 1, 2).defined


def test_estimate_round_trips_through_json_with_nan():
    import json

    e = Estimate(0.5, 0.4, 0.6, n=10, p_value=0.03, method="Wilson", reason="x")
    assert Estimate.from_dict(json.loads(json.dumps(e.to_dict()))) == e
    u = undefined("no pairs")
    back = Estimate.from_dict(json.loads(json.dumps(u.to_dict())))
    assert u.to_dict()["value"] is None and not back.defined and back.reason == "no pairs"
    assert Estimate(0.7, 0.55, 0.8).excludes(0.5) and not Estimate(0.6, 0.45, 0.7).excludes(0.5)
    assert not Estimate(0.7).excludes(0.5)  # no interval: nothing excluded
