"""Log-prob scoring spends the minimum forward work: only completion positions reach the LM head,
each distinct pair is run once, and cached pairs cost nothing (counted, not timed)."""

from __future__ import annotations

import pytest
import torch

from cream_plugin import logprobs
from cream_plugin.logprobs import FORWARD_STATS, LogProbCache, response_logps, tokenize_example

CHATS = [
    [{"role": "user", "content": "What is two plus three?"}],
    [{"role": "system", "content": "Please answer step by step."},
     {"role": "user", "content": "Which gas do plants absorb?"}],
]
RESPONSES = [["Answer: 5", "The quick brown fox jumps.", "5"], ["B. carbon dioxide", "no", "5"]]


def _lengths(tok):
    seqs = [tokenize_example(tok, p, r) for p, row in zip(CHATS, RESPONSES, strict=True)
            for r in row]
    return sum(len(ids) for ids, _ in seqs), sum(len(ids) - start for ids, start in seqs)


def test_forward_tokens_are_the_minimum(tiny_model, tiny_tokenizer):
    tokens, completion = _lengths(tiny_tokenizer)
    cache = LogProbCache()
    FORWARD_STATS.clear()
    # the first prompt row twice: the repeat is not run again
    response_logps(tiny_model, tiny_tokenizer, [*CHATS, CHATS[0]], [*RESPONSES, RESPONSES[0]],
                   batch_size=8, progress=False, cache=cache, model_key="m")
    assert FORWARD_STATS["sequences"] == 6
    assert FORWARD_STATS["tokens"] == tokens
    assert FORWARD_STATS["scored"] == completion  # prompt and padding never projected
    assert FORWARD_STATS["padding"] <= 0.15 * tokens  # batches of similar lengths
    before = dict(FORWARD_STATS)
    response_logps(tiny_model, tiny_tokenizer, CHATS, RESPONSES, progress=False, cache=cache,
                   model_key="m")
    assert dict(FORWARD_STATS) == before


def test_completion_only_head_equals_trl_fused_head(tiny_model, tiny_tokenizer, monkeypatch):
    ours = response_logps(tiny_model, tiny_tokenizer, CHATS, RESPONSES, batch_size=4,
                          progress=False)
    monkeypatch.setattr(logprobs, "_plain_head", lambda model: False)
    fused = response_logps(tiny_model, tiny_tokenizer, CHATS, RESPONSES, batch_size=4,
                           progress=False)
    assert ours.sum == pytest.approx(fused.sum, abs=1e-4)
    assert (ours.num_tokens == fused.num_tokens).all()
    assert torch.isfinite(torch.tensor(ours.sum)).all()
