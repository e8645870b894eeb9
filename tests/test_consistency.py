"""Consistency metrics against scipy on random tables with ties and NaN, and the rate C."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from cream_plugin import consistency_rate, get_consistency_metric
from cream_plugin.ranking.consistency import join_tables, kendall, spearman, toporder


def _random_tables(n: int, rows: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued tables (many ties), some NaN, some constant rows."""
    rng = np.random.default_rng(seed + n)
    a = rng.integers(0, 4, size=(rows, n)).astype(float)
    b = rng.integers(0, 4, size=(rows, n)).astype(float)
    a[rng.random((rows, n)) < 0.03] = np.nan
    b[rng.random((rows, n)) < 0.03] = np.nan
    a[:5] = 2.0  # constant rows
    b[5:8] = b[5:8, :1]
    b[8:40] = a[8:40]  # identical rows
    b[40:60] = -a[40:60]  # reversed rows
    c = rng.normal(size=(rows, n))  # continuous rows, no ties
    a[60:120], b[60:120] = c[60:120], c[60:120] + rng.normal(scale=0.5, size=(60, n))
    return a, b


def _scipy_rows(fn, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([fn(x, y)[0] for x, y in zip(a, b, strict=True)], dtype=float)


@pytest.mark.parametrize("n", range(2, 9))
def test_kendall_equals_scipy(n):
    a, b = _random_tables(n)
    np.testing.assert_allclose(kendall(a, b), _scipy_rows(stats.kendalltau, a, b),
                               atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("n", range(2, 9))
def test_spearman_equals_scipy(n):
    a, b = _random_tables(n)
    np.testing.assert_allclose(spearman(a, b), _scipy_rows(stats.spearmanr, a, b),
                               atol=1e-12, equal_nan=True)


def _toporder_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Row-by-row definition: same set of best and same set of worst responses."""
    if np.isnan(x).any() or np.isnan(y).any() or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    rx, ry = stats.rankdata(x, method="min"), stats.rankdata(y, method="min")
    best = set(np.flatnonzero(rx == rx.max())) == set(np.flatnonzero(ry == ry.max()))
    worst = set(np.flatnonzero(rx == 1)) == set(np.flatnonzero(ry == 1))
    return float(best and worst)


@pytest.mark.parametrize("n", range(2, 9))
def test_toporder_equals_row_definition(n):
    a, b = _random_tables(n)
    expected = np.array([_toporder_reference(x, y) for x, y in zip(a, b, strict=True)])
    got = toporder(a, b)
    np.testing.assert_array_equal(got, expected)
    assert np.nanmax(got) == 1.0 and np.nanmin(got) == 0.0  # both outcomes occur


def test_toporder_known_rows():
    a = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [4, 3, 2, 1]], dtype=float)
    b = np.array([[0, 5, 6, 9], [2, 1, 3, 4], [1, 2, 4, 3], [9, 5, 6, 0]], dtype=float)
    np.testing.assert_array_equal(toporder(a, b), [1.0, 0.0, 0.0, 1.0])


def test_registered_metrics_are_the_functions(fresh_plugins):
    for name, fn in (("kendall", kendall), ("spearman", spearman), ("toporder", toporder)):
        assert get_consistency_metric(name) is fn


@pytest.mark.parametrize("metric", ["kendall", "spearman", "toporder"])
def test_consistency_rate_defined_for_nan_and_constant_rows(metric):
    a = np.array([[1, 2, 3], [3, 2, 1], [1, np.nan, 3], [2, 2, 2], [1, 2, 3]], dtype=float)
    b = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3], [5, 5, 5]], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        res = consistency_rate(a, b, metric=metric)
    assert res.metric == metric
    assert res.per_prompt[0] == 1.0 and res.per_prompt[1] == 0.0
    np.testing.assert_array_equal(res.per_prompt[2:], [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(res.defined, [True, True, False, False, False])
    assert res.num_undefined == 3
    assert res.mean == pytest.approx(0.5) and res.std == pytest.approx(0.5)
    assert np.isfinite(res.per_prompt).all()


def test_rate_mapping_and_statistics():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 5)), rng.normal(size=(50, 5))
    tau = kendall(a, b)
    res = consistency_rate(a, b)
    np.testing.assert_allclose(res.per_prompt, (tau + 1) / 2)
    assert res.mean == pytest.approx(((tau + 1) / 2).mean())
    assert res.std == pytest.approx(((tau + 1) / 2).std())
    res_top = consistency_rate(a, b, metric="toporder")
    np.testing.assert_array_equal(res_top.per_prompt, toporder(a, b))
    with pytest.raises(ValueError, match="same shape"):
        consistency_rate(a, b[:3])


def test_all_undefined_gives_the_fill_value():
    res = consistency_rate(np.ones((3, 4)), np.ones((3, 4)))
    assert res.mean == 0.5 and res.std == 0.0 and not res.defined.any()


def test_plugin_metric_with_unit_scale(fresh_plugins):
    from cream_plugin import hookimpl
    from cream_plugin.plugins.manager import get_plugin_manager
    from cream_plugin.plugins.registry import clear_cache

    class Plugin:
        @staticmethod
        @hookimpl
        def register_consistency_metrics(register):
            register("same-best", lambda a, b: (a.argmax(1) == b.argmax(1)).astype(float),
                     scale="unit")

    get_plugin_manager().add_plugin(Plugin, "test-metric", "test")
    clear_cache()
    a = np.array([[1.0, 2.0], [1.0, 2.0]])
    b = np.array([[0.0, 3.0], [3.0, 0.0]])
    np.testing.assert_array_equal(consistency_rate(a, b, "same-best").per_prompt, [1.0, 0.0])


def test_join_tables_by_prompt_id_not_position():
    ids, a, b = join_tables(["p1", "p2", "p3"], [[1, 2], [3, 4], [5, 6]],
                            ["p3", "p1"], [[60, 50], [10, 20]])
    assert ids == ["p1", "p3"]
    np.testing.assert_array_equal(a, [[1, 2], [5, 6]])
    np.testing.assert_array_equal(b, [[10, 20], [60, 50]])
