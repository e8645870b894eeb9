"""Pool accuracy, best-vs-worst pairs (the build_pairs rule) and label accuracy against gold."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cream_plugin.errors import DataError
from cream_plugin.instruments.reward_quality import (
    answer_key_correctness,
    best_worst,
    label_accuracy,
    pair_labels,
    pool_accuracy,
    random_rewards,
)
from cream_plugin.ranking.pairs import build_pairs

NAN = np.nan


def test_pool_accuracy_counts_only_gold_answer_responses():
    correct = [[1, 0, 1], [NAN, NAN, NAN], [0, 0, 1]]
    e = pool_accuracy(correct)
    assert (e.value, e.n) == (pytest.approx(3 / 6), 6)
    ci = stats.binomtest(3, 6).proportion_ci(method="wilson")
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high))
    empty = pool_accuracy([[NAN, NAN]])
    assert not empty.defined and empty.n == 0 and "gold answer" in empty.reason
    with pytest.raises(DataError, match=r"1\.0, 0\.0 or NaN"):
        pool_accuracy([[0.5, 1.0]])
    with pytest.raises(DataError, match="expected \\(P, N\\)"):
        pool_accuracy([1.0, 0.0])


def test_best_worst_is_the_build_pairs_rule_on_ties_and_nan():
    rng = np.random.default_rng(0)
    table = rng.integers(0, 3, size=(300, 4)).astype(float)  # many ties
    table[rng.random(table.shape) < 0.25] = NAN
    responses = [[f"p{i}r{j}" for j in range(4)] for i in range(300)]
    ids = [str(i) for i in range(300)]
    pairs = build_pairs(ids, ["x"] * 300, responses, table)
    best, worst, usable = best_worst(table)
    assert [str(i) for i in np.flatnonzero(usable)] == [p["prompt_id"] for p in pairs]
    for p in pairs:
        i = int(p["prompt_id"])
        assert (p["chosen"], p["rejected"]) == (responses[i][best[i]], responses[i][worst[i]])


def test_label_accuracy_by_hand():
    rewards = np.array([
        [0.9, 0.1, 0.5],     # best 0 (correct), worst 1 (wrong): right
        [0.2, 0.8, 0.5],     # best 1 (wrong), worst 0 (correct): wrong
        [0.3, 0.7, 0.1],     # best 1, worst 2, both correct: not discordant
        [1.0, 1.0, 1.0],     # all equal: no pair
        [NAN, 0.4, 0.6],     # best 2 (correct), worst 1 (wrong): right
        [0.6, 0.4, 0.5],     # no gold answer
        [3.0, 3.0, 1.0],     # tie at the top: best is response 0 (correct), worst 2 (wrong)
    ])
    correct = np.array([
        [1, 0, 0], [1, 0, 1], [0, 1, 1], [1, 0, 1], [0, 0, 1], [NAN, NAN, NAN], [1, 0, 0],
    ], dtype=float)
    result = label_accuracy(rewards, correct)
    assert (result.prompts, result.pairs, result.pairs_with_gold, result.discordant_pairs) == (
        7, 6, 5, 4)
    e = result.accuracy
    assert (e.value, e.n) == (0.75, 4)
    assert e.p_value == pytest.approx(stats.binomtest(3, 4, 0.5).pvalue)
    labels = pair_labels(rewards, correct)
    assert labels.label_correct.tolist() == [True, False, False, False, True, False, True]


def test_label_accuracy_undefined_cases_say_why():
    assert label_accuracy([[1.0, 1.0]], [[1, 0]]).accuracy.reason == "no pairs"
    assert label_accuracy([[1.0, 0.0]], [[NAN, NAN]]).accuracy.reason == (
        "no pairs with a gold answer")
    e = label_accuracy([[1.0, 0.0]], [[1, 1]]).accuracy
    assert not e.defined and "differ in correctness" in e.reason
    with pytest.raises(DataError, match=r"correct has shape \(1, 3\); expected \(1, 2\)"):
        label_accuracy([[1.0, 0.0]], [[1, 0, 1]])
    empty = label_accuracy(np.zeros((2, 0)), np.zeros((2, 0)))
    assert empty.pairs == 0 and not empty.accuracy.defined


def test_a_reversed_reward_scores_below_chance_and_random_near_it():
    rng = np.random.default_rng(1)
    correct = (rng.random((400, 4)) < 0.5).astype(float)
    truth = correct + rng.random(correct.shape) * 0.1
    assert label_accuracy(truth, correct).accuracy.value == 1.0
    reversed_ = label_accuracy(-truth, correct).accuracy
    assert reversed_.value == 0.0 and reversed_.p_value < 1e-10
    rand = label_accuracy(random_rewards(correct.shape, seed=3), correct).accuracy
    assert rand.low < 0.5 < rand.high


def test_random_rewards_are_seeded_and_keep_unscored_entries():
    like = np.array([[1.0, NAN, 2.0], [NAN, NAN, 0.0]])
    a = random_rewards((2, 3), seed=5, like=like)
    assert np.array_equal(np.isnan(a), np.isnan(like))
    assert np.array_equal(a, random_rewards((2, 3), seed=5, like=like), equal_nan=True)
    assert not np.allclose(random_rewards((2, 3), 5), random_rewards((2, 3), 6))


def test_answer_key_correctness_is_the_answer_key_rewarder():
    from cream_plugin.rewarders.oracle import AnswerKeyRewarder

    prompts = ["q1", "q2", "q3"]
    responses = [["The answer is B", "A."], ["#### 72", "I think 70"], ["x", "y"]]
    refs = ["choice:B", "number:72", None]
    got = answer_key_correctness(prompts, responses, refs)
    expected = AnswerKeyRewarder().score(prompts, responses, references=refs).rewards
    assert np.array_equal(got, expected, equal_nan=True)
    assert got[:2].tolist() == [[1.0, 0.0], [1.0, 0.0]] and np.isnan(got[2]).all()
    with pytest.raises(DataError, match="answer key"):
        answer_key_correctness(prompts, responses, refs[:2])


def test_same_prompt_pool_pairs_prompts_and_leaves_out_unknown_ones():
    from cream_plugin.instruments.reward_quality import same_prompt_pool

    old = [[1, 0, 0], [1, 1, NAN], [NAN, NAN, NAN], [0, 0, 0]]
    new = [[1, 1, 0], [0, 1, 1], [1, 0, 0], [1, 1, 1]]
    pool = same_prompt_pool(old, new, seed=0, n_boot=4000)
    # prompts 0, 1, 3 have gold answers under both: changes +1/3, -1/3, +1
    assert pool.difference.value == pytest.approx((1 / 3 - 1 / 3 + 1) / 3)
    assert pool.difference.n == 3 and pool.difference.has_interval
    # bootstrap over prompts: replicate means lie between the smallest and largest change
    assert -1 / 3 <= pool.difference.low <= pool.difference.high <= 1
    assert pool.old.value == pytest.approx(3 / 8) and pool.old.n == 8
    assert pool.new.value == pytest.approx(8 / 12) and pool.new.n == 12
    assert same_prompt_pool(old, new, seed=0, n_boot=4000) == pool  # seeded
    with pytest.raises(DataError, match="same prompts"):
        same_prompt_pool(old, new[:2])
