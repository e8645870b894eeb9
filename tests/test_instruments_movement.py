"""Per-token KL between consecutive policies from summed log-probs, and mean |Δ log-prob|."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cream_plugin.errors import DataError
from cream_plugin.instruments.movement import mean_abs_logp_change, per_token_kl, policy_movement

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


def test_kl_estimates_the_exact_kl_in_each_direction():
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.1, 0.6, 0.3])
    forward = per_token_kl(*_sequences(p, q, seed=0))
    q_on_q, p_on_q, t_q = _sequences(q, p, seed=1)
    reverse = per_token_kl(q_on_q, p_on_q, t_q)
    exact_f, exact_r = stats.entropy(p, q), stats.entropy(q, p)
    assert abs(exact_f - exact_r) > 0.05  # the two directions differ on this pair
    assert forward.value == pytest.approx(exact_f, abs=0.02)
    assert reverse.value == pytest.approx(exact_r, abs=0.02)
    assert forward.low < exact_f < forward.high and reverse.low < exact_r < reverse.high


def test_ratio_and_prompt_clustered_interval_by_hand():
    # Two prompts, one response each: diffs 1 and 3 over 2 tokens each.
    e = per_token_kl([[1.0], [3.0]], [[0.0], [0.0]], [[2], [2]])
    # R = 4 / 4 = 1; residuals a - R b = -1, +1; SE = sqrt(2/1 * 2) / 4 = 0.5
    assert e.value == 1.0 and e.n == 4 and e.reason == "2 prompts"
    assert (e.low, e.high) == pytest.approx((1 - 1.959964 * 0.5, 1 + 1.959964 * 0.5), abs=1e-5)


def test_unusable_responses_are_left_out():
    new = [[-2.0, NAN, -5.0], [-1.0, -1.0, -3.0]]
    old = [[-3.0, -1.0, -5.5], [-1.0, -2.0, -1.0]]
    tokens = [[2, 3, 0], [1, 1, 2]]
    e = per_token_kl(new, old, tokens)
    assert e.value == pytest.approx((1.0 + 0.0 + 1.0 - 2.0) / (2 + 1 + 1 + 2))
    assert e.n == 6
    d = mean_abs_logp_change(new, old, tokens)
    assert d.value == pytest.approx((1.0 + 0.0 + 1.0 + 2.0) / 6)
    assert not per_token_kl([[NAN]], [[0.0]], [[3]]).defined
    with pytest.raises(DataError, match="num_tokens"):
        per_token_kl([[0.0]], [[0.0]], [[-1]])


def test_policy_movement_uses_the_samples_it_is_given():
    new, old = np.array([0.6, 0.4]), np.array([0.4, 0.6])
    new_on_new, old_on_new, t_new = _sequences(new, old, 2, (20, 2))
    old_on_old, new_on_old, t_old = _sequences(old, new, 3, (20, 3))
    only_old = policy_movement(old_on_old=old_on_old, new_on_old=new_on_old, tokens_old=t_old)
    assert not only_old.kl_forward.defined and only_old.kl_reverse.defined
    assert only_old.mean_abs_delta == mean_abs_logp_change(new_on_old, old_on_old, t_old)
    both = policy_movement(new_on_new=new_on_new, old_on_new=old_on_new, tokens_new=t_new,
                           old_on_old=old_on_old, new_on_old=new_on_old, tokens_old=t_old)
    assert both.kl_forward == per_token_kl(new_on_new, old_on_new, t_new)
    assert both.kl_reverse == per_token_kl(old_on_old, new_on_old, t_old)
    assert both.mean_abs_delta == mean_abs_logp_change(new_on_new, old_on_new, t_new)
    assert both.kl_forward.value > 0 and both.kl_reverse.value > 0
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
    assert not moved.kl_reverse.defined  # no log-probs of M_t's samples: still no reverse KL
    assert moved.length_old.value == pytest.approx(41.0) and moved.length_old.n == 4
    assert moved.length_new.high < moved.length_old.low
    scored = policy_movement(new_on_new=np.zeros((2, 2)), old_on_new=np.zeros((2, 2)),
                             tokens_new=t_new, old_on_old=np.zeros((2, 2)),
                             new_on_old=np.zeros((2, 2)), tokens_old=t_old + 1,
                             lengths_old=t_old)
    assert scored.length_old.value == pytest.approx(42.0)  # the scored counts win
