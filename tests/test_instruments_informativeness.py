"""Is C informative: AUC of C for a correct label, accuracy by C bin, soft vs hard labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from cream_plugin.errors import DataError
from cream_plugin.instruments.informativeness import (
    accuracy_by_c_bin,
    auc,
    auc_of_c,
    soft_label_accuracy,
)

NAN = np.nan
# Six prompts, two responses; the reward always prefers response 0.
REWARDS = np.tile([1.0, 0.0], (6, 1))
# Label right, right, wrong, right, wrong, and one pair where both responses are correct.
CORRECT = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [0, 1], [1, 1]], dtype=float)
C = np.array([0.9, 0.6, 0.3, 0.6, 0.7, 0.5])


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=200) / 4  # heavy ties
    labels = rng.random(200) < 0.4 + 0.3 * scores
    e = auc(scores, labels)
    assert e.value == pytest.approx(roc_auc_score(labels, scores))
    assert e.n == 200
    expected_p = stats.mannwhitneyu(scores[labels], scores[~labels], method="asymptotic").pvalue
    assert e.p_value == pytest.approx(expected_p)


def test_auc_of_c_by_hand_with_delong_logit_interval():
    e = auc_of_c(REWARDS, CORRECT, C)
    # positives C = .9 .6 .6, negatives .3 .7: 4 of 6 orderings right.
    assert e.value == pytest.approx(4 / 6)
    assert e.value == pytest.approx(roc_auc_score([1, 1, 0, 1, 0], [0.9, 0.6, 0.3, 0.6, 0.7]))
    # Placements: positives (1, .5, .5), negatives (1, 1/3); var = (1/12)/3 + (2/9)/2 = 5/36.
    a, se = 4 / 6, np.sqrt(5 / 36)
    half = 1.959964 * se / (a * (1 - a))
    low, high = (1 / (1 + np.exp(-(np.log(2) + s * half))) for s in (-1, 1))
    assert (e.low, e.high) == pytest.approx((low, high), abs=1e-6)
    assert e.reason == "3 positive and 2 negative cases"


def test_auc_needs_both_classes():
    e = auc_of_c(REWARDS[:2], CORRECT[:2], C[:2])
    assert not e.defined and e.reason.startswith("2 positive and 0 negative")
    with pytest.raises(DataError, match="one score per case"):
        auc([0.1, 0.2], [True])


def test_accuracy_by_c_bin_by_hand():
    rows = accuracy_by_c_bin(REWARDS, CORRECT, C)
    assert [(r.low, r.high) for r in rows] == [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)]
    assert [r.accuracy.n for r in rows] == [0, 1, 3, 1]
    assert not rows[0].accuracy.defined and "bin" in rows[0].accuracy.reason
    assert rows[2].accuracy.value == pytest.approx(2 / 3)
    assert rows[2].accuracy.p_value == pytest.approx(stats.binomtest(2, 3).pvalue)
    # The last bin is closed: C = 1 belongs to it; a bin edge goes to the upper bin.
    edge = accuracy_by_c_bin(REWARDS[:2], CORRECT[:2], [1.0, 0.5], bins=[0, 0.5, 1])
    assert [r.accuracy.n for r in edge] == [0, 2]


def test_bad_bins_and_c_are_rejected():
    with pytest.raises(DataError, match="increasing"):
        accuracy_by_c_bin(REWARDS, CORRECT, C, bins=[0, 0.5, 0.5, 1])
    with pytest.raises(DataError, match=r"C has shape \(3,\); expected \(6,\)"):
        auc_of_c(REWARDS, CORRECT, C[:3])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        auc_of_c(REWARDS, CORRECT, C + 0.5)


def test_soft_label_accuracy_by_hand():
    result = soft_label_accuracy(REWARDS, CORRECT, C)
    # soft values: .9, .6, (1-.3)=.7, .6, (1-.7)=.3 over the five discordant pairs
    soft = np.array([0.9, 0.6, 0.7, 0.6, 0.3])
    hard = np.array([1, 1, 0, 1, 0.0])
    assert result.soft.value == pytest.approx(soft.mean())
    assert result.hard.value == pytest.approx(0.6) and result.hard.n == 5
    assert result.difference.value == pytest.approx(0.02)
    low, high = stats.t.interval(0.95, 4, loc=(soft - hard).mean(), scale=stats.sem(soft - hard))
    assert (result.difference.low, result.difference.high) == pytest.approx((low, high))
    assert result.difference.p_value == pytest.approx(stats.ttest_1samp(soft - hard, 0).pvalue)


def test_pairs_with_nan_c_are_left_out():
    c = C.copy()
    c[0] = NAN
    result = soft_label_accuracy(REWARDS, CORRECT, c)
    assert result.hard.n == 4 and result.hard.value == pytest.approx(0.5)
    assert auc_of_c(REWARDS, CORRECT, c).n == 4
