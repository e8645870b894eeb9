"""Response log-probs: equal to a plain forward pass, to TRL's own reference log-probs, cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cream_plugin.errors import DataError
from cream_plugin.forward.logprobs import LogProbCache, SequenceLogProbs, response_logps

CHATS = [
    [{"role": "user", "content": "What is two plus three?"}],
    [{"role": "system", "content": "Please answer step by step."},
     {"role": "user", "content": "Which gas do plants absorb?"}],
]
CHAT_RESPONSES = [
    ["Answer: 5", "The quick brown fox.", "5"],
    ["B. carbon dioxide", "oxygen", "Score: 5"],
]
TEXTS = ["Question: What is two plus three? Answer:", "Write a short poem about the sea."]
TEXT_RESPONSES = [[" 5", " four", " The waves"], [" The waves roll in.", " no", " sea"]]


def _plain_logp(model, full_ids: list[int], start: int) -> float:
    """Reference: a full-logits forward pass and log_softmax, completion positions only."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full_ids])).logits[0]
    logps = torch.log_softmax(logits.double(), dim=-1)
    targets = torch.tensor(full_ids[start:])
    return float(logps[start - 1 : len(full_ids) - 1].gather(1, targets[:, None]).sum())


def test_chat_logps_equal_plain_forward_without_prompt_tokens(tiny_model, tiny_tokenizer):
    tiny_model.eval()
    out = response_logps(tiny_model, tiny_tokenizer, CHATS, CHAT_RESPONSES, batch_size=4,
                         progress=False)
    assert isinstance(out, SequenceLogProbs)
    assert out.sum.shape == (2, 3) and out.num_tokens.shape == (2, 3)
    for i, chat in enumerate(CHATS):
        prompt = tiny_tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True)["input_ids"]
        for j, response in enumerate(CHAT_RESPONSES[i]):
            full = tiny_tokenizer.apply_chat_template(
                [*chat, {"role": "assistant", "content": response}], tokenize=True,
                return_dict=True)["input_ids"]
            assert full[: len(prompt)] == prompt
            # The scored tokens are the response and the closing tokens, no header.
            assert tiny_tokenizer.decode(full[len(prompt):]) == response + "<|im_end|>\n"
            assert out.num_tokens[i, j] == len(full) - len(prompt)
            expected = _plain_logp(tiny_model, full, len(prompt))
            assert out.sum[i, j] == pytest.approx(expected, abs=1e-4)
    np.testing.assert_allclose(out.mean, out.sum / out.num_tokens)


def test_text_prompts_append_eos_like_trl(tiny_model, tiny_tokenizer):
    tiny_model.eval()
    out = response_logps(tiny_model, tiny_tokenizer, TEXTS, TEXT_RESPONSES, progress=False)
    for i, text in enumerate(TEXTS):
        prompt = tiny_tokenizer(text)["input_ids"]
        for j, response in enumerate(TEXT_RESPONSES[i]):
            full = tiny_tokenizer(text + response + tiny_tokenizer.eos_token)["input_ids"]
            start = 0
            while start < min(len(prompt), len(full)) and prompt[start] == full[start]:
                start += 1
            assert out.num_tokens[i, j] == len(full) - start
            assert out.sum[i, j] == pytest.approx(_plain_logp(tiny_model, full, start), abs=1e-4)


def test_batching_does_not_change_results(tiny_model, tiny_tokenizer):
    one = response_logps(tiny_model, tiny_tokenizer, CHATS, CHAT_RESPONSES, batch_size=1,
                         progress=False)
    many = response_logps(tiny_model, tiny_tokenizer, CHATS, CHAT_RESPONSES, batch_size=16,
                          progress=False)
    np.testing.assert_allclose(one.sum, many.sum, atol=1e-4)
    np.testing.assert_array_equal(one.num_tokens, many.num_tokens)


@pytest.mark.parametrize("conversational", [True, False])
def test_equal_to_trl_dpo_reference_logps(tiny_model, tiny_tokenizer, tmp_path, conversational):
    """The sums are exactly what TRL's DPOTrainer precomputes as ref_chosen/rejected_logps."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    if conversational:
        prompts, table = CHATS, CHAT_RESPONSES
        rows = [{"prompt": p, "chosen": [{"role": "assistant", "content": r[0]}],
                 "rejected": [{"role": "assistant", "content": r[2]}]}
                for p, r in zip(prompts, table, strict=True)]
    else:
        prompts, table = TEXTS, TEXT_RESPONSES
        rows = [{"prompt": p, "chosen": r[0], "rejected": r[2]}
                for p, r in zip(prompts, table, strict=True)]
    args = DPOConfig(output_dir=str(tmp_path), precompute_ref_log_probs=True, use_cpu=True,
                     bf16=False, per_device_train_batch_size=2, report_to=[], max_length=None,
                     dataset_num_proc=None)
    trainer = DPOTrainer(model=tiny_model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tiny_tokenizer)
    ds = trainer.train_dataset
    ours = response_logps(tiny_model, tiny_tokenizer, prompts, table, progress=False)
    np.testing.assert_allclose(ours.sum[:, 0], ds["ref_chosen_logps"], atol=1e-4)
    np.testing.assert_allclose(ours.sum[:, 2], ds["ref_rejected_logps"], atol=1e-4)
    np.testing.assert_array_equal(ours.num_tokens[:, 0], [len(x) for x in ds["chosen_ids"]])


def test_max_length_truncates_like_keep_start(tiny_model, tiny_tokenizer):
    full = response_logps(tiny_model, tiny_tokenizer, CHATS, CHAT_RESPONSES, progress=False)
    short = response_logps(tiny_model, tiny_tokenizer, CHATS, CHAT_RESPONSES, max_length=20,
                           progress=False)
    prompt_len = len(tiny_tokenizer.apply_chat_template(
        CHATS[0], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    assert short.num_tokens[0, 0] == min(full.num_tokens[0, 0], 20 - prompt_len)
    assert (short.num_tokens <= full.num_tokens).all()
    assert (short.num_tokens[1] == 0).all() and (short.sum[1] == 0).all()  # prompt fills 20


def test_cache_hits_prove_reuse(tiny_model, tiny_tokenizer, tmp_path):
    calls = []
    cache = LogProbCache()
    first = response_logps(tiny_model, tiny_tokenizer, CHATS, CHAT_RESPONSES, cache=cache,
                           model_key="m1", progress=False)
    assert (cache.hits, cache.misses) == (0, 6) and len(cache) == 6

    hook = tiny_model.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        again = response_logps(tiny_model, tiny_tokenizer, CHATS, CHAT_RESPONSES, cache=cache,
                               model_key="m1", progress=False)
        assert calls == []  # nothing recomputed
        assert (cache.hits, cache.misses) == (6, 6)
        np.testing.assert_array_equal(first.sum, again.sum)

        # A duplicate response inside one call is scored once; a new one is a miss.
        dup = [["Answer: 5", "Answer: 5", "new one"]]
        response_logps(tiny_model, tiny_tokenizer, CHATS[:1], dup, cache=cache, model_key="m1",
                       progress=False)
        assert (cache.hits, cache.misses) == (8, 7)
        assert len(calls) == 1
        # Another model key is another model: all misses.
        response_logps(tiny_model, tiny_tokenizer, CHATS[:1], dup, cache=cache, model_key="m2",
                       progress=False)
        assert cache.misses == 9
    finally:
        hook.remove()

    path = tmp_path / "cache.jsonl"
    cache.save(path)
    loaded = LogProbCache.load(path)
    assert len(loaded) == len(cache)
    reused = response_logps(tiny_model, tiny_tokenizer, CHATS, CHAT_RESPONSES, cache=loaded,
                            model_key="m1", progress=False)
    assert loaded.hits == 6 and loaded.misses == 0
    np.testing.assert_array_equal(reused.sum, first.sum)


def test_bad_tables_raise_clear_errors(tiny_model, tiny_tokenizer, tmp_path):
    with pytest.raises(DataError, match="prompt 1: expected a list of 2"):
        response_logps(tiny_model, tiny_tokenizer, CHATS, [["a", "b"], ["c"]], progress=False)
    with pytest.raises(DataError, match="2 prompts but 1"):
        response_logps(tiny_model, tiny_tokenizer, CHATS, [["a"]], progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model": "m"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1"):
        LogProbCache.load(bad)
