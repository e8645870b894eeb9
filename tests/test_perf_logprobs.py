"""Log-prob scoring spends the minimum forward work: only completion positions reach the LM head,
each distinct pair is run once, and cached pairs cost nothing (counted, not timed)."""

from __future__ import annotations

import pytest
import torch

from cream_plugin.forward import logprobs
from cream_plugin.forward.logprobs import (
    FORWARD_STATS,
    LogProbCache,
    response_logps,
    tokenize_example,
)

CHATS = [
    [{"role": "user", "content": "What is two plus three?"}],
    [{"role": "system", "content": "Please answer step by step."},
     {"role": "user", "content": "Which gas do plants absorb?"}],
]
RESPONSES = [["Answer: 5", "The quick brown fox jumps.", "5"], ["B. carbon dioxide", "no", "5"]]


def _lengths(tok):
    """(tokens a forward must run, completion tokens): each prompt's start (all but its last
    token) once, then every response from the last prompt token on."""
    tokens = completion = 0
    for prompt, row in zip(CHATS, RESPONSES, strict=True):
        seqs = [tokenize_example(tok, prompt, r) for r in row]
        shared = {tuple(ids[:start - 1]) for ids, start in seqs}
        assert len(shared) == 1  # one prompt, one prefix
        tokens += sum(len(ids) - start + 1 for ids, start in seqs) + len(shared.pop())
        completion += sum(len(ids) - start for ids, start in seqs)
    return tokens, completion


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
    monkeypatch.setattr(logprobs, "plain_head", lambda model: False)
    fused = response_logps(tiny_model, tiny_tokenizer, CHATS, RESPONSES, batch_size=4,
                           progress=False)
    assert ours.sum == pytest.approx(fused.sum, abs=1e-4)
    assert (ours.num_tokens == fused.num_tokens).all()
    assert torch.isfinite(torch.tensor(ours.sum)).all()


@pytest.mark.parametrize("batch_size, max_length", [(2, None), (16, None), (4, 32)])
def test_prompt_trees_equal_separate_sequences(tiny_model, tiny_tokenizer, monkeypatch,
                                               batch_size, max_length):
    """Each prompt once with its responses as branches: the sums and counts of scoring every
    (prompt, response) as its own sequence, for fewer forward tokens. Batch 2 splits a prompt's
    responses over groups; max_length 32 cuts some completions short or to nothing."""
    chats = [*CHATS, [{"role": "user", "content": "Name a primary colour."}]]
    responses = [*RESPONSES, ["Red.", "Blue is one of them.", "Red."]]
    FORWARD_STATS.clear()
    trees = response_logps(tiny_model, tiny_tokenizer, chats, responses, batch_size=batch_size,
                           max_length=max_length, progress=False)
    tree_tokens = FORWARD_STATS["tokens"]
    monkeypatch.setattr("cream_plugin.forward.prefix_tree.takes_tree_mask", lambda model: False)
    FORWARD_STATS.clear()
    separate = response_logps(tiny_model, tiny_tokenizer, chats, responses,
                              batch_size=batch_size, max_length=max_length, progress=False)
    assert (trees.num_tokens == separate.num_tokens).all()
    assert trees.sum == pytest.approx(separate.sum, abs=1e-4)
    assert tree_tokens < FORWARD_STATS["tokens"]
