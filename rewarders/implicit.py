"""The DPO implicit reward, CREAM's self-reward: r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)).

Log-probs are summed over exactly the response tokens DPO trains on (see
:mod:`cream_plugin.forward.logprobs`). Without a reference model (M0 has none) the reward is the
mean per-token log-likelihood, so long answers are not penalised for their length alone. ``beta``
scales both forms; it does not change any ranking.

Option ``length_normalised`` (``rewarder.options: {implicit: {length_normalised: true}}``, or a
method's ``reward_options``): the reward per response token,
r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)) / |y|, with |y| the number of response tokens
scored. The summed reward of a response grows with its length wherever the policy moved toward
it token by token, and shrinks with it wherever it moved away; per token, a short and a long
answer compete on the average movement (the cream-no-rc-lennorm control, docs/study-controls.md).
Without a reference it changes nothing (that form is a mean already).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from cream_plugin.forward.logprobs import LogProbCache, SequenceLogProbs, response_logps
from cream_plugin.plugins.interfaces import Prompt, RewardResult


def implicit_rewards(
    policy: SequenceLogProbs, ref: SequenceLogProbs | None, beta: float = 1.0,
    length_normalised: bool = False,
) -> np.ndarray:
    """(P, N) rewards from already computed log-prob tables; NaN where a response has no token.
    ``length_normalised`` divides the reference form by the response's token count."""
    empty = policy.num_tokens == 0
    if ref is None:
        rewards = beta * policy.mean
    else:
        if ref.sum.shape != policy.sum.shape:
            raise ValueError(f"policy {policy.sum.shape} and reference {ref.sum.shape} differ")
        rewards = beta * (policy.sum - ref.sum)
        empty |= ref.num_tokens == 0
        if length_normalised:
            with np.errstate(divide="ignore", invalid="ignore"):
                rewards = rewards / policy.num_tokens
    return np.where(empty, np.nan, rewards)


class ImplicitRewarder:
    """Ranks responses by the DPO implicit reward of ``model`` against ``ref_model``.

    A shared :class:`LogProbCache` with stable ``model_key`` / ``ref_key`` names lets one
    iteration reuse each (model, sequence) log-prob: M_{t-1}'s log-probs serve as the reference
    of M_t's reward, as the policy of M_{t-1}'s own reward, and M_t's as DPO reference log-probs.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        ref_model: Any = None,
        *,
        beta: float = 1.0,
        batch_size: int = 16,
        cache: LogProbCache | None = None,
        model_key: str = "policy",
        ref_key: str = "reference",
        max_length: int | None = None,
        progress: bool = True,
        length_normalised: bool = False,
    ) -> None:
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if ref_model is not None and ref_model is model:
            raise ValueError("ref_model is the policy itself: every reward would be 0")
        self.model = model
        self.tokenizer = tokenizer
        self.ref_model = ref_model
        self.beta = beta
        self.batch_size = batch_size
        self.cache = cache
        self.model_key = model_key
        self.ref_key = ref_key
        self.max_length = max_length
        self.progress = progress
        self.length_normalised = length_normalised

    def logps(self, prompts: list[Prompt], responses: list[list[str]],
              which: str = "policy") -> SequenceLogProbs:
        """Log-prob table of the policy (``which="policy"``) or of the reference."""
        model, key = (self.model, self.model_key) if which == "policy" else (
            self.ref_model, self.ref_key)
        return response_logps(model, self.tokenizer, prompts, responses,
                              batch_size=self.batch_size, max_length=self.max_length,
                              progress=self.progress, cache=self.cache, model_key=key)

    def score(self, prompts: list[Prompt], responses: list[list[str]]) -> RewardResult:
        policy = self.logps(prompts, responses, "policy")
        ref = self.logps(prompts, responses, "reference") if self.ref_model is not None else None
        rewards = implicit_rewards(policy, ref, self.beta, self.length_normalised)
        counts: Counter[str] = Counter()
        nan = np.isnan(rewards)
        counts["scored"] = int((~nan).sum())
        if nan.any():
            counts["no_response_tokens"] = int(nan.sum())
        details: dict[str, Any] = {"logps": policy.sum, "num_tokens": policy.num_tokens,
                                   "policy_logps": policy}
        if ref is not None:
            details["ref_logps"] = ref.sum
            details["reference_logps"] = ref
        return RewardResult(rewards, counts, details)
