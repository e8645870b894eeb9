"""The implicit DPO reward against a direct forward pass; reuse of cached log-probs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cream_plugin import get_rewarder
from cream_plugin.forward.logprobs import LogProbCache, SequenceLogProbs
from cream_plugin.rewarders.implicit import ImplicitRewarder, implicit_rewards
from cream_plugin.testing import build_tiny_model

PROMPTS = [
    [{"role": "user", "content": "What is two plus three?"}],
    [{"role": "user", "content": "Write a short poem about the sea."}],
]
RESPONSES = [["Answer: 5", "4", "The quick brown fox."], ["The waves roll in.", "sea", "no"]]


def _direct(model, tokenizer, prompt, response) -> tuple[float, int]:
    """log pi(response | prompt) from full logits + log_softmax, prompt tokens excluded."""
    p_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"]
    ids = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": response}],
                                        tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)[len(p_ids) - 1 : -1]
    tokens = torch.tensor(ids[len(p_ids):])
    return float(lp.gather(1, tokens[:, None]).sum()), len(tokens)


@pytest.fixture
def ref_model(tiny_tokenizer):
    return build_tiny_model(tiny_tokenizer, seed=1).eval()


def test_reward_with_reference_equals_direct_forward(tiny_model, tiny_tokenizer, ref_model):
    tiny_model.eval()
    rewarder = ImplicitRewarder(tiny_model, tiny_tokenizer, ref_model, beta=0.1, progress=False)
    result = rewarder.score(PROMPTS, RESPONSES)
    assert result.rewards.shape == (2, 3)
    for i, prompt in enumerate(PROMPTS):
        for j, response in enumerate(RESPONSES[i]):
            pol, n = _direct(tiny_model, tiny_tokenizer, prompt, response)
            ref, _ = _direct(ref_model, tiny_tokenizer, prompt, response)
            assert result.rewards[i, j] == pytest.approx(0.1 * (pol - ref), abs=1e-5)
            assert result.details["logps"][i, j] == pytest.approx(pol, abs=1e-4)
            assert result.details["ref_logps"][i, j] == pytest.approx(ref, abs=1e-4)
            assert result.details["num_tokens"][i, j] == n
    assert result.counts["scored"] == 6


def test_reward_without_reference_is_mean_loglik(tiny_model, tiny_tokenizer):
    tiny_model.eval()
    result = ImplicitRewarder(tiny_model, tiny_tokenizer, progress=False).score(PROMPTS, RESPONSES)
    for i, prompt in enumerate(PROMPTS):
        for j, response in enumerate(RESPONSES[i]):
            total, n = _direct(tiny_model, tiny_tokenizer, prompt, response)
            assert result.rewards[i, j] == pytest.approx(total / n, abs=1e-5)


def test_implicit_rewards_from_tables():
    pol = SequenceLogProbs([[-4.0, -9.0]], [[2, 3]])
    ref = SequenceLogProbs([[-5.0, -6.0]], [[2, 0]])
    np.testing.assert_allclose(implicit_rewards(pol, None), [[-2.0, -3.0]])
    out = implicit_rewards(pol, ref, beta=0.5)
    assert out[0, 0] == 0.5 and np.isnan(out[0, 1])  # no reference token: not scored


def test_shared_cache_reuses_each_sequence(tiny_model, tiny_tokenizer, ref_model):
    """M_{t-1} is the reference of M_t's reward and the policy of its own: computed once."""
    cache = LogProbCache()
    current = ImplicitRewarder(tiny_model, tiny_tokenizer, ref_model, cache=cache,
                               model_key="iter1", ref_key="iter0", progress=False)
    current.score(PROMPTS, RESPONSES)
    assert (cache.hits, cache.misses) == (0, 12)
    previous = ImplicitRewarder(ref_model, tiny_tokenizer, None, cache=cache, model_key="iter0",
                                progress=False)
    calls = []
    hook = ref_model.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        res = previous.score(PROMPTS, RESPONSES)
    finally:
        hook.remove()
    assert calls == [] and (cache.hits, cache.misses) == (6, 12)
    assert np.isfinite(res.rewards).all()


def test_registered_by_name(fresh_plugins, tiny_model, tiny_tokenizer):
    rewarder = get_rewarder("implicit", model=tiny_model, tokenizer=tiny_tokenizer, beta=2.0,
                            progress=False)
    assert isinstance(rewarder, ImplicitRewarder) and rewarder.beta == 2.0
    with pytest.raises(ValueError, match="beta"):
        ImplicitRewarder(tiny_model, tiny_tokenizer, beta=0.0)
