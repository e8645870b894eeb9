"""Paired tests between models on the same lm-eval items, and aggregation across seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from cream_plugin.errors import DataError
from cream_plugin.instruments.paired import (
    compare_items,
    item_scores,
    mcnemar_exact,
    paired_bootstrap,
)
from cream_plugin.instruments.seeds import across_seeds, aggregate_seeds


def test_mcnemar_matches_statsmodels_exact():
    mcnemar = pytest.importorskip("statsmodels.stats.contingency_tables").mcnemar
    rng = np.random.default_rng(0)
    for flip in (0.05, 0.2, 0.5):
        a = (rng.random(60) < 0.5).astype(float)
        b = np.where(rng.random(60) < flip, 1 - a, a)
        got = mcnemar_exact(a, b)
        both, neither = ((a == 1) & (b == 1)).sum(), ((a == 0) & (b == 0)).sum()
        table = [[both, got.a_only], [got.b_only, neither]]
        assert got.p_value == pytest.approx(mcnemar(table, exact=True).pvalue)
        assert got.n == 60


def test_mcnemar_by_hand_and_edge_cases():
    a = [1, 1, 1, 1, 1, 0, 0, 1]
    b = [0, 0, 0, 0, 0, 0, 0, 1]
    got = mcnemar_exact(a, b)
    assert (got.a_only, got.b_only) == (5, 0)
    assert got.p_value == pytest.approx(2 * 0.5**5)
    assert mcnemar_exact([1, 0], [1, 0]).p_value == 1.0  # nothing discordant
    with pytest.raises(DataError, match="0/1"):
        mcnemar_exact([0.5, 1], [1, 0])


def test_paired_bootstrap_is_seeded_and_agrees_with_scipy():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, 400)
    b = a + rng.normal(0.1, 0.5, 400)
    e = paired_bootstrap(a, b, seed=3)
    assert e.value == pytest.approx((b - a).mean()) and e.n == 400
    assert e == paired_bootstrap(a, b, seed=3)
    ref = stats.bootstrap(((b - a),), np.mean, n_resamples=10_000, method="percentile",
                          rng=np.random.default_rng(0)).confidence_interval
    assert (e.low, e.high) == pytest.approx((ref.low, ref.high), abs=0.006)
    assert not paired_bootstrap([np.nan], [1.0]).defined


def _samples(task_scores, filter_name="none"):
    return [{"doc_id": i, "filter": filter_name, "acc": s, "doc_hash": f"h{i}"}
            for i, s in task_scores]


def test_item_scores_from_log_samples_and_its_errors(tmp_path):
    rows = _samples([(0, 1.0), (1, 0.0), (2, 1.0)])
    assert item_scores(rows, "acc") == {0: 1.0, 1: 0.0, 2: 1.0}
    path = tmp_path / "samples_arc_easy_2026.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert item_scores(path, "acc") == {0: 1.0, 1: 0.0, 2: 1.0}
    two = _samples([(0, 1.0)], "strict-match") + _samples([(0, 0.0)], "flexible-extract")
    with pytest.raises(DataError, match="several filters"):
        item_scores(two, "acc")
    assert item_scores(two, "acc", "flexible-extract") == {0: 0.0}
    with pytest.raises(DataError, match="doc_id 0 occurs twice"):
        item_scores(rows + rows[:1], "acc")
    with pytest.raises(DataError, match="no metric 'exact_match'"):
        item_scores(rows, "exact_match")
    path.write_text('{"doc_id": 0, "acc": 1}\nnot json\n')
    with pytest.raises(DataError, match=r"samples_arc_easy_2026\.jsonl:2: not valid JSON"):
        item_scores(path, "acc")


def test_compare_items_matches_by_doc_id():
    a = {0: 1.0, 1: 1.0, 2: 0.0, 3: 1.0, 9: 0.0}
    b = {3: 1.0, 2: 1.0, 1: 0.0, 0: 0.0, 7: 1.0}   # other order, one item each unmatched
    c = compare_items(a, b)
    assert (c.mean_a, c.mean_b) == (0.75, 0.5)
    assert c.difference.value == pytest.approx(-0.25) and c.difference.n == 4
    assert (c.mcnemar.a_only, c.mcnemar.b_only) == (2, 1)
    assert c.difference.p_value == c.mcnemar.p_value == pytest.approx(1.0)
    assert (c.only_a, c.only_b) == (1, 1)
    cont = compare_items({0: 0.2, 1: 0.4, 2: 0.5}, {0: 0.3, 1: 0.6, 2: 0.4})
    assert cont.mcnemar is None and cont.difference.value == pytest.approx(0.2 / 3)
    assert cont.difference.p_value == pytest.approx(
        stats.wilcoxon([0.1, 0.2, -0.1]).pvalue)
    assert "Wilcoxon" in cont.difference.method


def test_across_seeds_is_a_t_interval():
    values = [0.41, 0.44, 0.39]
    e = across_seeds(values)
    low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert (e.value, e.low, e.high, e.n) == pytest.approx((np.mean(values), low, high, 3))
    assert not across_seeds([0.4]).has_interval
    rows = [{"method": "cream", "task": "arc", "value": v} for v in values]
    rows += [{"method": "sft", "task": "arc", "value": 0.3}, {"method": "sft", "task": "arc",
                                                                 "value": None}]
    out = aggregate_seeds(rows, ("method", "task"))
    assert out[("cream", "arc")] == e
    assert out[("sft", "arc")].n == 1


@pytest.mark.slow
def test_item_scores_read_real_lm_eval_log_samples(tiny_tokenizer):
    """lm-eval's own log_samples output: per-item means equal the task score lm-eval reports."""
    pytest.importorskip("lm_eval")
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator
    from cream_plugin.testing import build_tiny_model

    evaluator = LMEvalEvaluator()
    tasks = list(evaluator.load_tasks(["cream_arc_easy"]).values())
    scores = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        lm = HFLM(pretrained=build_tiny_model(tiny_tokenizer, seed=seed),
                  tokenizer=tiny_tokenizer, batch_size=8)
        out = simple_evaluate(model=lm, tasks=tasks, task_manager=evaluator.task_manager,
                              limit=12, log_samples=True, bootstrap_iters=0)
        per_item = item_scores(out["samples"]["cream_arc_easy"], "acc")
        assert len(per_item) == 12
        assert np.mean(list(per_item.values())) == pytest.approx(
            out["results"]["cream_arc_easy"]["acc,none"])
        scores.append(per_item)
    c = compare_items(scores[0], scores[1])
    assert c.difference.n == 12 and c.mcnemar is not None
    assert c.difference.value == pytest.approx(c.mean_b - c.mean_a)
