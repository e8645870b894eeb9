"""The pre-allocated decode cache and loop agree with transformers' own cache and ``generate``."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _batch(tokenizer, texts):
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


TEXTS = ["the cat sat on", "a", "one two three four five six", "hello there"]


def _greedy(logits):
    return logits.argmax(dim=-1)


def _never(alive, out, step):
    return torch.zeros(alive.numel(), dtype=torch.bool)


def test_preallocated_layer_matches_dynamic_cache_through_drops(tiny_model, tiny_tokenizer):
    from transformers import DynamicCache

    from cream_plugin.forward.kv_cache import make_cache

    ids, mask = _batch(tiny_tokenizer, TEXTS)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    caches = [make_cache(tiny_model, 2), DynamicCache(config=tiny_model.config)]  # forces growth
    logits = []
    with torch.inference_mode():
        for cache in caches:
            m, p, x, steps = mask, positions, ids, []
            for step in range(6):
                out = tiny_model(input_ids=x, attention_mask=m, position_ids=p,
                                 past_key_values=cache, logits_to_keep=1).logits[:, -1]
                steps.append(out)
                x, p = out.argmax(-1, keepdim=True), p[:, -1:] + 1
                if step in (1, 3):  # drop the first row, then the last one
                    rows = x.shape[0]
                    keep = torch.arange(1, rows) if step == 1 else torch.arange(rows - 1)
                    cache.batch_select_indices(keep)
                    x, p, m = x[keep], p[keep], m[keep]
                m = torch.cat([m, m.new_ones((m.shape[0], 1))], dim=-1)
            logits.append(steps)
    assert type(caches[0].layers[0]).__name__ == "PreallocatedLayer"
    for ours, theirs in zip(*logits, strict=True):
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_decode_equals_greedy_generate(tiny_model, tiny_tokenizer):
    from cream_plugin.forward.decoding import decode

    ids, mask = _batch(tiny_tokenizer, TEXTS)
    out = decode(tiny_model, ids, mask, max_new_tokens=8, choose=_greedy, finished=_never)
    with torch.no_grad():
        ref = tiny_model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                  max_new_tokens=8, min_new_tokens=8,
                                  pad_token_id=tiny_tokenizer.pad_token_id)
    assert out.tolist() == ref[:, ids.shape[1]:].tolist()


def test_rows_from_one_prompt_share_its_prefill(tiny_model, tiny_tokenizer):
    from cream_plugin.forward.decoding import decode

    ids, mask = _batch(tiny_tokenizer, TEXTS[:2])
    source = torch.tensor([0, 0, 1, 0, 1])
    shared = decode(tiny_model, ids, mask, max_new_tokens=6, choose=_greedy, finished=_never,
                    row_source=source)
    repeated = decode(tiny_model, ids[source], mask[source], max_new_tokens=6, choose=_greedy,
                      finished=_never)
    assert shared.shape == (5, 6) and shared.tolist() == repeated.tolist()


def test_finished_rows_leave_the_batch_and_keep_their_last_token(tiny_model, tiny_tokenizer):
    from cream_plugin.forward.decoding import decode

    ids, mask = _batch(tiny_tokenizer, TEXTS)
    seen_rows: list[int] = []
    kept_calls: list[list[int]] = []

    def finished(alive, out, step):
        seen_rows.append(alive.numel())
        return (alive == 2) if step == 1 else (alive == 0) if step == 3 else alive < 0

    out = decode(tiny_model, ids, mask, max_new_tokens=6, choose=_greedy, finished=finished,
                 kept=lambda keep: kept_calls.append(keep.tolist()))
    full = decode(tiny_model, ids, mask, max_new_tokens=6, choose=_greedy, finished=_never)
    assert seen_rows == [4, 4, 3, 3, 2, 2]
    assert kept_calls == [[0, 1, 3], [1, 2]]
    assert out[2, 2:].tolist() == [-1] * 4 and out[0, 4:].tolist() == [-1] * 2
    assert out[2, :2].tolist() == full[2, :2].tolist()
    assert out[1].tolist() == full[1].tolist() and out[3].tolist() == full[3].tolist()


def test_length_groups_bound_padding_and_run_long_rows_alone():
    from cream_plugin.forward.decoding import length_groups

    assert length_groups([10, 10, 10]) == [[0, 1, 2]]
    assert length_groups([5, 100, 98, 6]) == [[1, 2], [3, 0]]
    assert length_groups([300, 300, 20]) == [[0], [1], [2]]
    lengths = [140, 70, 90, 139, 72, 88, 500]
    groups = length_groups(lengths)
    assert groups[0] == [6]
    assert sorted(r for g in groups for r in g) == list(range(len(lengths)))
    for g in groups:
        assert lengths[g[0]] * len(g) <= 1.15 * sum(lengths[r] for r in g)


def test_grouped_prefill_equals_one_padded_forward(tiny_model, tiny_tokenizer):
    from cream_plugin.forward.decoding import length_groups, prefill

    ids, mask = _batch(tiny_tokenizer, TEXTS)
    assert len(length_groups(mask.sum(-1).tolist())) > 1
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.inference_mode():
        logits, cache = prefill(tiny_model, ids, mask, ids.shape[1] + 4)
        ref = tiny_model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
        assert torch.allclose(logits, ref, atol=1e-5)
        step = logits.argmax(-1, keepdim=True)
        grown = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        nxt = tiny_model(input_ids=step, attention_mask=grown, position_ids=positions[:, -1:] + 1,
                         past_key_values=cache).logits[:, -1]
        full = tiny_model(input_ids=torch.cat([ids, step], 1), attention_mask=grown,
                          position_ids=(grown.cumsum(-1) - 1).clamp_min(0)).logits[:, -1]
    assert torch.allclose(nxt, full, atol=1e-5)


def test_stream_with_refills_equals_each_prompt_decoded_alone(tiny_model, tiny_tokenizer):
    """Rows joining a running batch (padding added on either side, leading columns trimmed)
    get the tokens they get when decoded alone."""
    from cream_plugin.forward.decoding import decode, decode_stream

    texts = [*TEXTS, "z", "seven eight nine ten eleven twelve thirteen fourteen", "ok then"]
    prompts = [tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    stop_after = {i: 2 + (3 * i) % 7 for i in range(len(prompts))}  # rows finish at mixed steps

    def finished(alive, tokens):
        return torch.tensor([len(tokens[r]) >= stop_after[r] for r in alive])

    done: list[int] = []
    streamed = decode_stream(tiny_model, prompts, max_new_tokens=7, batch_size=3,
                             choose=_greedy, finished=finished, on_done=done.append)
    assert sorted(done) == list(range(len(prompts)))
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([prompt])
        alone = decode(tiny_model, ids, torch.ones_like(ids), max_new_tokens=7, choose=_greedy,
                       finished=_never)[0].tolist()
        assert streamed[i] == alone[: min(7, stop_after[i])], i
