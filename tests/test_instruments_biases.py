"""Within-prompt Spearman with length and duplicates; prompts with identical responses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cream_plugin.errors import DataError
from cream_plugin.instruments.biases import (
    all_identical_share,
    duplicate_counts,
    mean_prompt_spearman,
    within_prompt_spearman,
)

NAN = np.nan


def test_one_prompt_is_spearman():
    r = [[0.3, 0.1, 0.9, 0.4, 0.4]]
    length = [[10, 3, 40, 12, 7]]
    e = within_prompt_spearman(r, length)
    assert e.value == pytest.approx(stats.spearmanr(r[0], length[0]).statistic)
    assert e.n == 5 and not e.has_interval and "one prompt" in e.reason


def test_pooled_within_prompt_matches_centred_ranks_computed_independently():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=(50, 4)).astype(float)
    # Prompt-level offsets that would create a spurious pooled correlation.
    offset = rng.normal(0, 100, size=(50, 1))
    rewards = 0.02 * lengths + rng.normal(0, 0.5, size=(50, 4)) + offset
    lengths += offset * 10
    xs = np.concatenate([stats.rankdata(row) - stats.rankdata(row).mean() for row in rewards])
    ys = np.concatenate([stats.rankdata(row) - stats.rankdata(row).mean() for row in lengths])
    e = within_prompt_spearman(rewards, lengths, seed=1)
    assert e.value == pytest.approx(stats.pearsonr(xs, ys).statistic)
    assert e.low < e.value < e.high and e.n == 200 and e.reason == "50 prompts"
    assert e == within_prompt_spearman(rewards, lengths, seed=1)  # seeded bootstrap
    # A raw pooled Spearman would be dominated by the prompt offsets.
    assert stats.spearmanr(rewards.ravel(), lengths.ravel()).statistic > 0.9 > e.value


def test_opposite_prompts_cancel_and_ties_use_average_ranks():
    rewards = [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    lengths = [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]
    assert within_prompt_spearman(rewards, lengths).value == pytest.approx(0.0)
    tied = within_prompt_spearman([[1.0, 1.0, 2.0, 5.0]], [[3.0, 1.0, 2.0, 2.0]])
    assert tied.value == pytest.approx(
        stats.spearmanr([1, 1, 2, 5], [3, 1, 2, 2]).statistic)


def test_nan_rewards_drop_responses_and_constant_prompts_drop_out():
    rewards = [[0.1, NAN, 0.3, 0.2], [1.0, 1.0, 1.0, 1.0], [NAN, NAN, 0.5, NAN]]
    lengths = [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]
    e = within_prompt_spearman(rewards, lengths)
    assert e.value == pytest.approx(stats.spearmanr([0.1, 0.3, 0.2], [1, 3, 4]).statistic)
    assert e.n == 7  # 3 + 4 responses of prompts with two or more finite values
    flat = within_prompt_spearman([[1.0, 1.0], [2.0, 2.0]], [[1, 2], [3, 4]])
    assert not flat.defined and "vary" in flat.reason
    with pytest.raises(DataError, match=r"covariate has shape \(1, 3\)"):
        within_prompt_spearman([[1.0, 2.0]], [[1, 2, 3]])


def test_mean_prompt_spearman_is_the_mean_of_scipy_per_prompt():
    rewards = [[1.0, 2.0, 3.0, 0.5], [0.3, 0.1, 0.2, 0.4], [1.0, 1.0, 1.0, 1.0]]
    lengths = [[4, 2, 3, 1], [1, 2, 3, 4], [1, 2, 3, 4]]
    rhos = [stats.spearmanr(rewards[i], lengths[i]).statistic for i in range(2)]
    e = mean_prompt_spearman(rewards, lengths)
    assert e.value == pytest.approx(np.mean(rhos)) and e.n == 2


def test_duplicate_counts_and_all_identical_share():
    responses = [["a", "b", "a ", "c"], ["x", "x", "x", "x"], ["p", "q", "r", "s"]]
    assert duplicate_counts(responses).tolist() == [[2, 1, 2, 1], [4, 4, 4, 4], [1, 1, 1, 1]]
    share = all_identical_share(responses)
    assert (share.value, share.n) == (pytest.approx(1 / 3), 3)
    ci = stats.binomtest(1, 3).proportion_ci(method="wilson")
    assert (share.low, share.high) == pytest.approx((ci.low, ci.high))
    # A reward that scores repeated answers higher shows a positive duplicate correlation.
    rewards = [[0.9, 0.1, 0.8, 0.2], [0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4]]
    dup = within_prompt_spearman(rewards, duplicate_counts(responses))
    assert dup.value == pytest.approx(stats.spearmanr([0.9, 0.1, 0.8, 0.2], [2, 1, 2, 1]).statistic)
    assert not all_identical_share([["only one"]]).defined
    with pytest.raises(DataError, match="same number of responses"):
        duplicate_counts([["a", "b"], ["c"]])
