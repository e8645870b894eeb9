"""Movement between consecutive policies: exact KL from per-response sums, the MC log-ratio from
summed log-probs, and mean |Δ log-prob|."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cream_plugin.errors import DataError
from cream_plugin.instruments.cluster_bootstrap import cluster_ratio
from cream_plugin.instruments.evidence import Evidence, MovementRow
from cream_plugin.instruments.movement import (
    Movement,
    exact_per_token_kl,
    mc_log_ratio,
    mean_abs_logp_change,
    policy_movement,
)
from cream_plugin.instruments.render import render_evidence

NAN = np.nan


def _sequences(p: np.ndarray, q: np.ndarray, seed: int, shape=(300, 8)):
    """Responses of 1-6 i.i.d. tokens drawn from p, with summed log-probs under p and q."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 7, size=shape)
    lp, lq = np.zeros(shape), np.zeros(shape)
    for idx in np.ndindex(shape):
        ys = rng.choice(len(p), size=tokens[idx], p=p)
        lp[idx], lq[idx] = np.log(p[ys]).sum(), np.log(q[ys]).sum()
    return lp, lq, tokens


def test_mc_log_ratio_estimates_the_kl_when_samples_come_from_the_model():
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.1, 0.6, 0.3])
    forward = mc_log_ratio(*_sequences(p, q, seed=0))
    q_on_q, p_on_q, t_q = _sequences(q, p, seed=1)
    reverse = mc_log_ratio(q_on_q, p_on_q, t_q)
    exact_f, exact_r = stats.entropy(p, q), stats.entropy(q, p)
    assert abs(exact_f - exact_r) > 0.05  # the two directions differ on this pair
    assert forward.value == pytest.approx(exact_f, abs=0.02)
    assert reverse.value == pytest.approx(exact_r, abs=0.02)
    assert forward.low < exact_f < forward.high and reverse.low < exact_r < reverse.high


def test_ratio_and_prompt_clustered_interval_by_hand():
    # Two prompts, one response each: diffs 1 and 3 over 2 tokens each.
    e = mc_log_ratio([[1.0], [3.0]], [[0.0], [0.0]], [[2], [2]])
    # R = 4 / 4 = 1; residuals a - R b = -1, +1; SE = sqrt(2/1 * 2) / 4 = 0.5
    assert e.value == 1.0 and e.n == 4 and e.reason == "2 prompts"
    assert (e.low, e.high) == pytest.approx((1 - 1.959964 * 0.5, 1 + 1.959964 * 0.5), abs=1e-5)


def test_unusable_responses_are_left_out():
    new = [[-2.0, NAN, -5.0], [-1.0, -1.0, -3.0]]
    old = [[-3.0, -1.0, -5.5], [-1.0, -2.0, -1.0]]
    tokens = [[2, 3, 0], [1, 1, 2]]
    e = mc_log_ratio(new, old, tokens)
    assert e.value == pytest.approx((1.0 + 0.0 + 1.0 - 2.0) / (2 + 1 + 1 + 2))
    assert e.n == 6
    d = mean_abs_logp_change(new, old, tokens)
    assert d.value == pytest.approx((1.0 + 0.0 + 1.0 + 2.0) / 6)
    assert not mc_log_ratio([[NAN]], [[0.0]], [[3]]).defined
    with pytest.raises(DataError, match="num_tokens"):
        mc_log_ratio([[0.0]], [[0.0]], [[-1]])


def test_policy_movement_uses_the_samples_it_is_given():
    new, old = np.array([0.6, 0.4]), np.array([0.4, 0.6])
    new_on_new, old_on_new, t_new = _sequences(new, old, 2, (20, 2))
    old_on_old, new_on_old, t_old = _sequences(old, new, 3, (20, 3))
    only_old = policy_movement(old_on_old=old_on_old, new_on_old=new_on_old, tokens_old=t_old)
    assert not only_old.mc_forward.defined and only_old.mc_reverse.defined
    assert not only_old.kl_forward.defined  # no exact-KL sums given
    assert only_old.mean_abs_delta == mean_abs_logp_change(new_on_old, old_on_old, t_old)
    both = policy_movement(new_on_new=new_on_new, old_on_new=old_on_new, tokens_new=t_new,
                           old_on_old=old_on_old, new_on_old=new_on_old, tokens_old=t_old)
    assert both.mc_forward == mc_log_ratio(new_on_new, old_on_new, t_new)
    assert both.mc_reverse == mc_log_ratio(old_on_old, new_on_old, t_old)
    assert both.mean_abs_delta == mean_abs_logp_change(new_on_new, old_on_new, t_new)
    assert both.mc_forward.value > 0 and both.mc_reverse.value > 0
    with pytest.raises(DataError, match="needs"):
        policy_movement(new_on_new=new_on_new)


def test_mean_response_length_of_each_models_samples():
    t_old = np.array([[20, 24, 0], [30, 26, 28]])  # an empty response counts as 0 tokens
    t_new = np.array([[2, 3], [1, 2]])
    logps = np.zeros_like
    moved = policy_movement(new_on_new=logps(t_new, dtype=float), old_on_new=logps(t_new, float),
                            tokens_new=t_new, old_on_old=logps(t_old, float),
                            new_on_old=logps(t_old, float), tokens_old=t_old)
    assert moved.length_old.value == pytest.approx(128 / 6) and moved.length_old.n == 6
    assert moved.length_new.value == pytest.approx(2.0) and moved.length_new.n == 4
    assert moved.length_old.has_interval and moved.length_new.high < moved.length_old.low
    last = policy_movement(old_on_old=logps(t_old, float), new_on_old=logps(t_old, float),
                           tokens_old=t_old)
    assert not last.length_new.defined and "last iteration" in last.length_new.reason


def test_old_length_from_token_counts_when_old_samples_were_not_scored():
    """Iteration t+1's samples give the KL; M_t's length then comes from counting its samples,
    so a collapse from M_t to M_t+1 still shows in the table and the summary."""
    t_old = np.array([[40, 42], [38, 44]])
    t_new = np.array([[2, 3], [1, 2]])
    moved = policy_movement(new_on_new=np.zeros((2, 2)), old_on_new=np.zeros((2, 2)),
                            tokens_new=t_new, lengths_old=t_old)
    assert not moved.mc_reverse.defined  # no log-probs of M_t's samples: no reverse log-ratio
    assert moved.length_old.value == pytest.approx(41.0) and moved.length_old.n == 4
    assert moved.length_new.high < moved.length_old.low
    scored = policy_movement(new_on_new=np.zeros((2, 2)), old_on_new=np.zeros((2, 2)),
                             tokens_new=t_new, old_on_old=np.zeros((2, 2)),
                             new_on_old=np.zeros((2, 2)), tokens_old=t_old + 1,
                             lengths_old=t_old)
    assert scored.length_old.value == pytest.approx(42.0)  # the scored counts win


def test_exact_per_token_kl_is_a_ratio_of_prompt_sums_with_a_clustered_interval():
    sums = np.array([[0.2, 0.4], [1.0, 0.0], [0.3, 0.3]])
    tokens = np.array([[2, 4], [5, 0], [3, 3]])
    e = exact_per_token_kl(sums, tokens, seed=3)
    assert e.value == pytest.approx(2.2 / 17) and e.n == 17
    assert e == cluster_ratio([0.6, 1.0, 0.6], [6, 5, 6], seed=3, unit="tokens")
    assert e.low <= e.value <= e.high and e.low >= 0
    with pytest.raises(DataError, match="kl_sums"):
        exact_per_token_kl([[-0.1]], [[2]])
    moved = policy_movement(kl_forward=sums, kl_reverse=sums / 2, kl_tokens=tokens, kl_on="M2's")
    assert moved.kl_forward.value == pytest.approx(2 * moved.kl_reverse.value)
    assert not moved.mc_forward.defined and moved.kl_on == "M2's" and moved.version == 2


def test_report_never_calls_a_negative_mc_log_ratio_a_kl_or_flattening():
    mc = mc_log_ratio([[-5.0], [-6.0]], [[-4.0], [-4.0]], [[3], [3]])
    assert mc.value < 0
    row = MovementRow("cream", 1, policy_movement(new_on_new=[[-5.0], [-6.0]],
                                                  old_on_new=[[-4.0], [-4.0]],
                                                  tokens_new=[[3], [3]]),
                      mc, mc)
    text = render_evidence(Evidence(movement=[row]))
    assert "flatten" not in text and "KL = -" not in text
    assert "MC log-ratio" in text and "exact KL not measured" in text
    # A record written before the exact KL (version 1) shows its kl_* as MC log-ratios.
    legacy = Evidence.from_dict({"movement": [{
        "method": "cream", "iteration": 1, "margins": {"value": 1.0}, "accuracies": {"value": 1.0},
        "movement": {"kl_forward": {"value": -0.1}, "kl_reverse": {"value": None},
                     "mean_abs_delta": {"value": 0.3}}}]})
    current = legacy.movement[0].movement.current()
    assert not current.kl_forward.defined and current.mc_forward.value == -0.1
    assert isinstance(current, Movement) and "exact KL not measured" in render_evidence(legacy)
