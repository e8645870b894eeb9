"""The prompt-clustered bootstrap and the within-prompt AUC of a reward for correctness."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cream_plugin.errors import DataError
from cream_plugin.instruments.cluster_bootstrap import (
    bootstrap_ratios,
    cluster_indices,
    cluster_ratio,
)
from cream_plugin.instruments.reward_quality import within_prompt_auc

NAN = np.nan


def test_replicates_resample_whole_prompts_by_hand():
    num, den = np.array([1.0, 4.0, 0.0]), np.array([2.0, 4.0, 1.0])
    reps = bootstrap_ratios(num, den, 50, seed=7)
    idx = cluster_indices(3, 50, seed=7)
    # Each replicate keeps each drawn prompt's numerator and denominator together.
    by_hand = [num[row].sum() / den[row].sum() for row in idx]
    np.testing.assert_allclose(reps, by_hand)
    # Only ratios of whole prompts occur: e.g. all three prompts once -> 5/7.
    row = next(k for k, r in enumerate(idx) if sorted(r) == [0, 1, 2])
    assert reps[row] == pytest.approx(5 / 7)


def test_cluster_ratio_is_reproducible_and_seeded():
    rng = np.random.default_rng(0)
    num, den = rng.random(40), rng.integers(1, 5, 40).astype(float)
    a, b = cluster_ratio(num, den, seed=1), cluster_ratio(num, den, seed=1)
    c = cluster_ratio(num, den, seed=2)
    assert a == b and (a.low, a.high) != (c.low, c.high)
    assert a.value == pytest.approx(num.sum() / den.sum())
    assert a.low < a.value < a.high and a.n == int(den.sum())
    reps = bootstrap_ratios(num, den, 10_000, seed=1)
    assert (a.low, a.high) == pytest.approx(tuple(np.nanquantile(reps, [0.025, 0.975])))


def test_cluster_ratio_edge_cases():
    assert not cluster_ratio([0.0], [0.0]).defined
    one = cluster_ratio([3.0, 5.0], [4.0, 0.0])
    assert one.value == 0.75 and not one.has_interval and "one prompt" in one.reason
    same = cluster_ratio([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
    assert same.low == same.high == 0.5  # no between-prompt variation: a zero-width interval
    with pytest.raises(DataError, match="den"):
        cluster_ratio([1.0], [-1.0])
    with pytest.raises(DataError, match="expected \\(P,\\)"):
        cluster_ratio([[1.0]], [[1.0]])
    with pytest.raises(DataError, match="not finite"):
        cluster_ratio([1.0, NAN], [1.0, 1.0])


def _by_hand(rewards, correct):
    """All (correct, wrong) pairs within each prompt, ties 1/2, pooled over prompts."""
    wins = pairs = 0.0
    for r, c in zip(rewards, correct, strict=True):
        for i in range(len(r)):
            for j in range(len(r)):
                if c[i] == 1 and c[j] == 0 and np.isfinite(r[i]) and np.isfinite(r[j]):
                    pairs += 1
                    wins += 1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0
    return wins / pairs, int(pairs)


def test_within_prompt_auc_on_a_hand_case_with_ties():
    rewards = [[3.0, 1.0, 1.0, 0.0], [2.0, 2.0, 5.0, NAN], [1.0, 2.0, 3.0, 4.0]]
    correct = [[1, 0, 1, 0], [1, 0, 0, 1], [1, 1, 1, 1]]
    # prompt 0: pairs (0,1) win, (0,3) win, (2,1) tie, (2,3) win -> 3.5 of 4
    # prompt 1: response 3 unscored; pairs (0,1) tie, (0,2) loss -> 0.5 of 2; prompt 2 no pair
    e = within_prompt_auc(rewards, correct, seed=0, n_boot=2000)
    assert e.value == pytest.approx(4.0 / 6) and e.n == 6
    assert e.value == pytest.approx(_by_hand(rewards, correct)[0])
    assert "2 prompts" in e.reason and e.has_interval


def test_within_prompt_auc_of_one_prompt_is_sklearns_auc():
    rng = np.random.default_rng(3)
    r = rng.integers(0, 4, 12).astype(float)  # integer scores: many ties
    c = np.array([1, 0] * 6)
    e = within_prompt_auc([r], [c])
    assert e.value == pytest.approx(roc_auc_score(c, r))
    assert e.n == 36 and not e.has_interval  # one prompt: nothing to resample


def test_within_prompt_auc_matches_by_hand_on_random_prompts_and_undefined_cases():
    rng = np.random.default_rng(5)
    rewards = rng.integers(0, 3, (30, 5)).astype(float)
    correct = (rng.random((30, 5)) < 0.4).astype(float)
    e = within_prompt_auc(rewards, correct)
    value, pairs = _by_hand(rewards, correct)
    assert e.value == pytest.approx(value) and e.n == pairs
    assert within_prompt_auc(rewards, correct) == e  # seeded: reproducible
    assert not within_prompt_auc([[1.0, 2.0]], [[1.0, 1.0]]).defined  # no wrong response
    with pytest.raises(DataError, match="correct"):
        within_prompt_auc([[1.0, 2.0]], [[1.0]])
