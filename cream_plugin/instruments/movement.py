"""How far the policy moved in one iteration, from log-probs the run already computes.

For samples y drawn from a model p, the Monte-Carlo estimate of the per-token KL(p || q) is
sum_i [log p(y_i) - log q(y_i)] / sum_i T_i, where log p(y_i) is the summed log-probability of
response i under p and T_i its number of response tokens. With p = pi_{t+1} (the iteration's
new model, on its own samples) this is KL(pi_{t+1} || pi_t); with p = pi_t on the samples the
iteration started from, the reverse KL(pi_t || pi_{t+1}). The estimate is unbiased for the
per-sequence KL divided by the mean length and may come out slightly negative from noise when the
models barely differ. The interval is a delta-method ratio interval clustered by prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cream_plugin.errors import DataError
from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.intervals import LEVEL, z_value
from cream_plugin.instruments.reward_quality import as_table


def _usable(logp_p: object, logp_q: object, num_tokens: object
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per-response log-ratio and token count, zero where a response cannot be used."""
    a = as_table(logp_p, "logp (sampling model)")
    b = as_table(logp_q, "logp (other model)", a.shape)
    t = as_table(num_tokens, "num_tokens", a.shape)
    if (t[np.isfinite(t)] < 0).any():
        raise DataError("num_tokens: expected counts >= 0")
    keep = np.isfinite(a) & np.isfinite(b) & np.isfinite(t) & (t > 0)
    return np.where(keep, a - b, 0.0), np.where(keep, t, 0.0)


def _ratio(num: np.ndarray, den: np.ndarray, method: str, level: float) -> Estimate:
    """sum(num) / sum(den) with a delta-method interval over rows (prompts) as clusters."""
    a, b = num.sum(axis=1), den.sum(axis=1)
    rows = b > 0
    a, b = a[rows], b[rows]
    tokens = float(b.sum())
    if tokens == 0:
        return undefined("no response with tokens and finite log-probs", method=method)
    r = float(a.sum() / tokens)
    p = int(rows.sum())
    if p < 2:
        return Estimate(r, n=int(tokens), method=method, reason="one prompt: no interval")
    se = math.sqrt(p / (p - 1) * float(((a - r * b) ** 2).sum())) / tokens
    half = z_value(level) * se
    return Estimate(r, r - half, r + half, n=int(tokens), method=method,
                    reason=f"{p} prompts")


def per_token_kl(logp_p: object, logp_q: object, num_tokens: object,
                 level: float = LEVEL) -> Estimate:
    """Per-token KL(p || q) in nats from responses sampled from p ((P, N) summed log-probs).

    ``n`` is the number of tokens. Responses with a NaN log-prob or no tokens are left out.
    """
    diff, tokens = _usable(logp_p, logp_q, num_tokens)
    return _ratio(diff, tokens, f"Monte-Carlo, prompt-clustered delta {level:.0%}", level)


def mean_abs_logp_change(logp_new: object, logp_old: object, num_tokens: object,
                         level: float = LEVEL) -> Estimate:
    """sum_i |log pi_new(y_i) - log pi_old(y_i)| / sum_i T_i, nats per token.

    From sequence-level sums, so changes of opposite sign inside one response cancel: a lower
    bound of the token-level mean |change|.
    """
    diff, tokens = _usable(logp_new, logp_old, num_tokens)
    return _ratio(np.abs(diff), tokens, f"sequence-level, prompt-clustered delta {level:.0%}",
                  level)


def mean_response_tokens(num_tokens: object, level: float = LEVEL) -> Estimate:
    """Mean response length in tokens over a (P, N) table of counts, prompt-clustered interval.

    Empty responses count as 0 tokens: a policy collapsing to bare answers shows here first
    (the implicit reward prefers short responses)."""
    t = as_table(num_tokens, "num_tokens")
    keep = np.isfinite(t)
    return _ratio(np.where(keep, t, 0.0), keep.astype(float),
                  f"prompt-clustered delta {level:.0%}", level)


def _unmeasured() -> Estimate:
    return undefined("not measured")


@dataclass(frozen=True)
class Movement:
    """How far pi_t moved to pi_{t+1}: both KL directions and the mean |Δ log-prob| per token,
    and the mean response length (tokens) of each model's samples."""

    kl_forward: Estimate   # KL(pi_{t+1} || pi_t), samples of pi_{t+1}
    kl_reverse: Estimate   # KL(pi_t || pi_{t+1}), samples of pi_t
    mean_abs_delta: Estimate
    length_old: Estimate = field(default_factory=_unmeasured)  # pi_t's samples (iteration t)
    length_new: Estimate = field(default_factory=_unmeasured)  # pi_{t+1}'s (iteration t+1)


def policy_movement(
    *,
    new_on_new: object = None,
    old_on_new: object = None,
    tokens_new: object = None,
    old_on_old: object = None,
    new_on_old: object = None,
    tokens_old: object = None,
    lengths_old: object = None,
) -> Movement:
    """Movement from whichever sample sets exist (``X_on_Y``: model X's log-probs of Y's samples).

    The forward KL needs pi_{t+1}'s samples, the reverse KL pi_t's. In the iterative loop the
    forward one is free: iteration t+1 scores its samples under M_{t+1} and under M_t (the
    implicit reward's reference). The mean |Δ log-prob| uses pi_{t+1}'s samples when given,
    else pi_t's. ``lengths_old``: token counts of pi_t's samples when they were not scored
    under both models (``tokens_old`` absent), so a collapse in length still shows.
    """
    have_new = all(v is not None for v in (new_on_new, old_on_new, tokens_new))
    have_old = all(v is not None for v in (old_on_old, new_on_old, tokens_old))
    if not (have_new or have_old):
        raise DataError("policy_movement needs new_on_new, old_on_new, tokens_new and/or "
                        "old_on_old, new_on_old, tokens_old")
    forward = (per_token_kl(new_on_new, old_on_new, tokens_new) if have_new
               else undefined("no samples of pi_{t+1} scored under both models"))
    reverse = (per_token_kl(old_on_old, new_on_old, tokens_old) if have_old
               else undefined("no samples of pi_t scored under both models"))
    delta = (mean_abs_logp_change(new_on_new, old_on_new, tokens_new) if have_new
             else mean_abs_logp_change(new_on_old, old_on_old, tokens_old))
    counts_old = tokens_old if tokens_old is not None else lengths_old
    length_old = (mean_response_tokens(counts_old) if counts_old is not None
                  else undefined("pi_t's samples not scored"))
    length_new = (mean_response_tokens(tokens_new) if tokens_new is not None
                  else undefined("pi_{t+1} not sampled (last iteration)"))
    return Movement(forward, reverse, delta, length_old, length_new)
