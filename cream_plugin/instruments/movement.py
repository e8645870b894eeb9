"""How far the policy moved in one iteration: exact per-token KL, and log-ratio figures.

The **exact KL** comes from both models' full next-token distributions at every scored position
of sampled responses (:mod:`cream_plugin.forward.exact_kl`): KL(pi_{t+1} || pi_t) and
KL(pi_t || pi_{t+1}) summed over the vocabulary, never negative. The per-token figure is sum over
responses of the summed KL / sum of their tokens, with an interval from a bootstrap over prompts
(:mod:`cream_plugin.instruments.cluster_bootstrap`). The contexts are those of the samples
(drawn at the run's temperature and top-p), so it is the mean KL over those contexts.

The **Monte-Carlo log-ratio** sum_i [log p(y_i) - log q(y_i)] / sum_i T_i on responses sampled
at temperature 0.8 / top-p 0.95 is not an estimate of KL(p || q) (the samples do not come from p)
and can be negative; it is kept under its own name ("MC log-ratio"), never called a KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from cream_plugin.errors import DataError
from cream_plugin.instruments.cluster_bootstrap import cluster_ratio
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


def mc_log_ratio(logp_p: object, logp_q: object, num_tokens: object,
                 level: float = LEVEL) -> Estimate:
    """Per-token mean of log p(y) - log q(y) over responses sampled from p at the run's
    temperature/top-p ((P, N) summed log-probs): the "MC log-ratio", not a KL (may be < 0).

    ``n`` is the number of tokens. Responses with a NaN log-prob or no tokens are left out.
    """
    diff, tokens = _usable(logp_p, logp_q, num_tokens)
    return _ratio(diff, tokens, f"MC log-ratio, prompt-clustered delta {level:.0%}", level)


def exact_per_token_kl(kl_sums: object, num_tokens: object, *, seed: int = 0,
                       level: float = LEVEL) -> Estimate:
    """Per-token exact KL: (P, N) per-response summed KL over (P, N) scored tokens, with a
    prompt-clustered bootstrap interval; ``n`` is the number of tokens."""
    kl = as_table(kl_sums, "kl_sums")
    tokens = as_table(num_tokens, "num_tokens", kl.shape)
    keep = np.isfinite(kl) & np.isfinite(tokens) & (tokens > 0)
    if (kl[keep] < 0).any():
        raise DataError("kl_sums: a KL summed over positions must be >= 0")
    return cluster_ratio(np.where(keep, kl, 0.0).sum(axis=1),
                         np.where(keep, tokens, 0.0).sum(axis=1), level=level, seed=seed,
                         unit="tokens")


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
    """How far pi_t moved to pi_{t+1}: the exact per-token KL in both directions, the
    Monte-Carlo log-ratios and mean |Δ log-prob| per token, and the mean response length
    (tokens) of each model's samples."""

    kl_forward: Estimate = field(default_factory=_unmeasured)  # exact KL(pi_{t+1} || pi_t)
    kl_reverse: Estimate = field(default_factory=_unmeasured)  # exact KL(pi_t || pi_{t+1})
    mean_abs_delta: Estimate = field(default_factory=_unmeasured)
    length_old: Estimate = field(default_factory=_unmeasured)  # pi_t's samples (iteration t)
    length_new: Estimate = field(default_factory=_unmeasured)  # pi_{t+1}'s (iteration t+1)
    mc_forward: Estimate = field(default_factory=_unmeasured)  # MC log-ratio, pi_{t+1}'s samples
    mc_reverse: Estimate = field(default_factory=_unmeasured)  # MC log-ratio, pi_t's samples
    kl_on: str = ""  # whose samples the exact KL's positions come from
    version: int = 1  # 1 (absent): evidence written before the exact KL, kl_* are MC log-ratios

    def current(self) -> Movement:
        """This record with version-1 fields read correctly: their ``kl_*`` were MC log-ratios."""
        if self.version >= 2:
            return self
        old = undefined("evidence written before the exact KL")
        return replace(self, kl_forward=old, kl_reverse=old, mc_forward=self.kl_forward,
                       mc_reverse=self.kl_reverse, version=2)


def policy_movement(
    *,
    new_on_new: object = None,
    old_on_new: object = None,
    tokens_new: object = None,
    old_on_old: object = None,
    new_on_old: object = None,
    tokens_old: object = None,
    lengths_old: object = None,
    kl_forward: object = None,
    kl_reverse: object = None,
    kl_tokens: object = None,
    kl_on: str = "",
    seed: int = 0,
) -> Movement:
    """Movement from whichever tables exist (``X_on_Y``: model X's log-probs of Y's samples).

    The exact KL needs ``kl_forward``, ``kl_reverse`` and ``kl_tokens`` ((P, N) sums from
    :func:`cream_plugin.forward.exact_kl.exact_kl`, on the samples named by ``kl_on``). The MC
    log-ratios need pi_{t+1}'s samples (forward) or pi_t's (reverse) scored under both models.
    The mean |Δ log-prob| uses pi_{t+1}'s samples when given, else pi_t's. ``lengths_old``:
    token counts of pi_t's samples when they were not scored under both models.
    """
    have_new = all(v is not None for v in (new_on_new, old_on_new, tokens_new))
    have_old = all(v is not None for v in (old_on_old, new_on_old, tokens_old))
    have_kl = all(v is not None for v in (kl_forward, kl_reverse, kl_tokens))
    if not (have_new or have_old or have_kl):
        raise DataError("policy_movement needs new_on_new, old_on_new, tokens_new and/or "
                        "old_on_old, new_on_old, tokens_old and/or kl_forward, kl_reverse, "
                        "kl_tokens")
    no_kl = undefined("exact KL not computed")
    exact_f = exact_per_token_kl(kl_forward, kl_tokens, seed=seed) if have_kl else no_kl
    exact_r = exact_per_token_kl(kl_reverse, kl_tokens, seed=seed) if have_kl else no_kl
    mc_f = (mc_log_ratio(new_on_new, old_on_new, tokens_new) if have_new
            else undefined("no samples of pi_{t+1} scored under both models"))
    mc_r = (mc_log_ratio(old_on_old, new_on_old, tokens_old) if have_old
            else undefined("no samples of pi_t scored under both models"))
    delta = (mean_abs_logp_change(new_on_new, old_on_new, tokens_new) if have_new
             else mean_abs_logp_change(new_on_old, old_on_old, tokens_old) if have_old
             else undefined("no log-probs of both models"))
    counts_old = tokens_old if tokens_old is not None else lengths_old
    length_old = (mean_response_tokens(counts_old) if counts_old is not None
                  else undefined("pi_t's samples not scored"))
    length_new = (mean_response_tokens(tokens_new) if tokens_new is not None
                  else undefined("pi_{t+1} not sampled (last iteration)"))
    return Movement(exact_f, exact_r, delta, length_old, length_new, mc_f, mc_r, kl_on, version=2)
