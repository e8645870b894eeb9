"""HF sampler: seeded per response (batching/order do not matter), greedy at T=0, cut at EOS."""

from __future__ import annotations

import pytest

from cream_plugin.forward.sampling import HFSampler, prompt_keys, row_seed
from cream_plugin.plugins.interfaces import Prompt
from cream_plugin.plugins.registry import get_sampler

PROMPTS: list[Prompt] = [
    "What is two plus three?",
    [{"role": "user", "content": "Write a short poem about the sea and the quick brown fox."}],
    [{"role": "system", "content": "Answer step by step."}, {"role": "user", "content": "Hi"}],
    "Which gas do plants absorb? A. oxygen B. carbon dioxide C. nitrogen D. helium",
]


def _sampler(model, tok, **kw):
    kw.setdefault("max_new_tokens", 10)
    return HFSampler(model, tok, progress=False, **kw)


def test_same_seed_same_outputs_whatever_the_batching(tiny_model, tiny_tokenizer):
    a = _sampler(tiny_model, tiny_tokenizer, batch_size=3).generate(PROMPTS, 3, seed=7)
    b = _sampler(tiny_model, tiny_tokenizer, batch_size=16).generate(PROMPTS[::-1], 3, seed=7)
    assert [len(r) for r in a] == [3] * len(PROMPTS)
    assert a == b[::-1]
    # samples of one prompt differ from each other, and another seed gives other samples
    assert len(set(a[1])) > 1
    c = _sampler(tiny_model, tiny_tokenizer, batch_size=3).generate(PROMPTS, 3, seed=8)
    assert c != a


def test_repeated_prompt_gets_fresh_samples(tiny_model, tiny_tokenizer):
    out = _sampler(tiny_model, tiny_tokenizer).generate([PROMPTS[0], PROMPTS[0]], 2, seed=0)
    assert out[0] != out[1]
    assert prompt_keys(["x", "y", "x"]) == ["0:x", "0:y", "1:x"]
    assert row_seed(0, "0:x", 0) != row_seed(0, "0:x", 1) != row_seed(1, "0:x", 0)


def test_temperature_zero_is_greedy(tiny_model, tiny_tokenizer):
    import torch

    sampler = _sampler(tiny_model, tiny_tokenizer, temperature=0, batch_size=2)
    out = sampler.generate(PROMPTS[:2], 2, seed=0)
    assert out[0][0] == out[0][1]
    # the same as a plain greedy generate of one prompt
    text = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPTS[0]}], add_generation_prompt=True, tokenize=False
    )
    ids = tiny_tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        ref = tiny_model.generate(**ids, do_sample=False, max_new_tokens=10)
    new = ref[0, ids["input_ids"].shape[1] :].tolist()
    if tiny_tokenizer.eos_token_id in new:
        new = new[: new.index(tiny_tokenizer.eos_token_id)]
    assert out[0][0] == tiny_tokenizer.decode(new, skip_special_tokens=True).strip()


def _force_eos_at(model, eos, step):
    """Make the model emit EOS as the ``step``-th new token of every row (a forward hook)."""
    calls: list[int] = []

    def force(module, args, kwargs, output):
        if kwargs["input_ids"].shape[1] > 1:  # a prefill: a new batch starts
            calls.clear()
        output.logits[..., eos] = float("inf") if len(calls) == step else float("-inf")
        calls.append(1)
        return output

    model.register_forward_hook(force, with_kwargs=True)


@pytest.mark.parametrize("step", [0, 3])
def test_responses_cut_at_eos_and_empty_kept(tiny_model, tiny_tokenizer, step):
    eos = tiny_tokenizer.eos_token_id
    _force_eos_at(tiny_model, eos, step)
    sampler = _sampler(tiny_model, tiny_tokenizer, temperature=0.8, max_new_tokens=10)
    out = sampler.generate(PROMPTS, 2, seed=0)
    assert [len(r) for r in out] == [2] * len(PROMPTS)
    assert sampler.stats["new_tokens"] == 2 * len(PROMPTS) * (step + 1)  # up to the EOS
    if step == 0:
        assert out == [["", ""]] * len(PROMPTS)  # empty responses are kept, not dropped
        assert sampler.stats["empty"] == 2 * len(PROMPTS)
    else:
        # the same draws without the EOS, stopped after `step` tokens: the text before the cut
        from cream_plugin.testing import build_tiny_model

        twin = build_tiny_model(tiny_tokenizer)
        _force_eos_at(twin, eos, step=10**6)
        head = _sampler(twin, tiny_tokenizer, max_new_tokens=step).generate(PROMPTS, 2, seed=0)
        assert out == head
        assert any(text for responses in out for text in responses)


class _Reference:
    """The sampler as it was: HF ``generate`` (greedy) with the full-vocabulary row sampler."""

    def __init__(self, seeds, temperature, top_p):
        from cream_plugin.forward.sampling import _RowSampler

        self.rows = _RowSampler(seeds, temperature, top_p)

    def __call__(self, input_ids, scores):
        import torch

        scores = scores.float() / self.rows.temperature
        best = self.rows._full(scores, self.rows._uniforms(scores.shape[-1]))
        return torch.full_like(scores, float("-inf")).scatter(1, best[:, None], 0.0)


@pytest.mark.parametrize("top_p", [0.95, 0.5, 1.0])
def test_decode_loop_equals_generate_with_row_sampler(tiny_model, tiny_tokenizer, top_p):
    import torch
    from transformers import LogitsProcessorList

    sampler = _sampler(tiny_model, tiny_tokenizer, temperature=0.8, top_p=top_p,
                       max_new_tokens=12, batch_size=5)
    out = sampler.generate(PROMPTS, 2, seed=11)
    for prompt, responses in zip(PROMPTS, out, strict=True):
        from cream_plugin.forward.sampling import render_prompt

        text = render_prompt(tiny_tokenizer, prompt)
        ids = tiny_tokenizer(text, return_tensors="pt", add_special_tokens=False)
        keys = prompt_keys([render_prompt(tiny_tokenizer, p) for p in PROMPTS])
        key = keys[PROMPTS.index(prompt)]
        seeds = [row_seed(11, key, j) for j in range(2)]
        with torch.no_grad():
            ref = tiny_model.generate(
                input_ids=ids["input_ids"].repeat(2, 1),
                attention_mask=ids["attention_mask"].repeat(2, 1),
                do_sample=False, max_new_tokens=12, pad_token_id=tiny_tokenizer.pad_token_id,
                logits_processor=LogitsProcessorList([_Reference(seeds, 0.8, top_p)]),
            )
        expected = [
            sampler._decode(row[ids["input_ids"].shape[1]:].tolist(), sampler._stop_ids())
            for row in ref
        ]
        assert responses == expected


def test_candidate_path_picks_the_full_path_token():
    import torch

    from cream_plugin.forward.sampling import _RowSampler

    torch.manual_seed(0)
    # peaked rows (nucleus inside the candidates) and flat rows (fallback), 1000-token vocab
    logits = torch.randn(64, 1000) * torch.linspace(0.5, 12.0, 64)[:, None]
    for top_p in (0.95, 0.7, 1.0):
        fast = _RowSampler(range(64), 0.8, top_p)(logits)
        full = _RowSampler(range(64), 0.8, top_p)
        assert torch.equal(fast, full._full(logits / 0.8, full._uniforms(1000)))


def test_special_tokens_stripped(tiny_model, tiny_tokenizer):
    sampler = _sampler(tiny_model, tiny_tokenizer, temperature=1.0, top_p=1.0, max_new_tokens=20)
    for responses in sampler.generate(PROMPTS, 4, seed=3):
        for text in responses:
            assert "<|im_end|>" not in text and "<|im_start|>" not in text


def test_registered_and_validates(tiny_model, tiny_tokenizer, fresh_plugins):
    sampler = get_sampler(
        "hf", model=tiny_model, tokenizer=tiny_tokenizer, progress=False, max_new_tokens=4
    )
    assert isinstance(sampler, HFSampler)
    with pytest.raises(ValueError, match="top_p"):
        HFSampler(tiny_model, tiny_tokenizer, top_p=0)
    with pytest.raises(ValueError, match="prompt must be"):
        sampler.generate([[{"content": "no role"}]], 1, seed=0)


def test_cream_sample_command(tiny_model_dir, tmp_path, capsys):
    import json

    from cream_plugin.cli import main

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"prompt_id": "a", "prompt": "What is two plus three?"})
        + "\n"
        + json.dumps({"prompt_id": "b", "prompt": [{"role": "user", "content": "Hi"}]})
        + "\n"
    )
    out = tmp_path / "samples.jsonl"
    argv = [
        "sample",
        "--model",
        str(tiny_model_dir),
        "--prompts",
        str(prompts),
        "--n",
        "3",
        "--seed",
        "0",
        "--out",
        str(out),
        "--max-new-tokens",
        "6",
        "--batch-size",
        "4",
    ]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt_id"] for r in rows] == ["a", "b"]
    assert all(len(r["responses"]) == 3 for r in rows)
    assert rows[1]["prompt"] == [{"role": "user", "content": "Hi"}]
    first = out.read_text()
    assert main(argv) == 0 and out.read_text() == first  # seeded: the same file again

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt_id": "a"}) + "\n")
    assert main([*argv[:3], "--prompts", str(bad), *argv[5:]]) == 1
    assert "bad.jsonl:1" in capsys.readouterr().err
