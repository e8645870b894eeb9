"""The exact per-position KL pass: equal to a direct full-logits torch computation, never
negative, the same whether batches are split across ranks or the models are FSDP2-sharded."""

from __future__ import annotations

import copy
import socket
from typing import Any

import numpy as np
import pytest

from cream_plugin.forward.exact_kl import exact_kl, position_kl
from cream_plugin.forward.logprobs import scored_sequence, tokenize_prompt
from cream_plugin.testing import perturbed_copy

PROMPTS = [f"Question {i}: what is {i} plus {i * 3}?" for i in range(4)]
RESPONSES = [[f"It is {4 * i}.", "No idea at all, sorry", f"{i}" * (i + 1)] for i in range(4)]
KW: dict[str, Any] = dict(batch_size=3, max_length=64)


def _direct(model_p: Any, model_q: Any, tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-response summed KL from each model's full logits of one unpadded sequence."""
    import torch
    import torch.nn.functional as F

    forward = np.zeros((len(PROMPTS), 3))
    reverse = np.zeros_like(forward)
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            prompt_ids = tokenize_prompt(tokenizer, prompt)
            for j, response in enumerate(RESPONSES[i]):
                ids, start = scored_sequence(tokenizer, prompt, response, prompt_ids, 64)
                x = torch.tensor([ids])
                lp = model_p(x).logits[0, start - 1 : len(ids) - 1].log_softmax(-1)
                lq = model_q(x).logits[0, start - 1 : len(ids) - 1].log_softmax(-1)
                # F.kl_div(input, target) = sum target * (log target - input)
                forward[i, j] = F.kl_div(lq, lp, log_target=True, reduction="sum").item()
                reverse[i, j] = F.kl_div(lp, lq, log_target=True, reduction="sum").item()
    return forward, reverse


@pytest.mark.parametrize("layout", ["prompt trees", "padded rows"])
def test_exact_kl_equals_a_direct_full_logits_computation(tiny_model, tiny_tokenizer, layout,
                                                          monkeypatch):
    if layout == "padded rows":  # as for a model that takes no tree mask
        monkeypatch.setattr("cream_plugin.forward.prefix_tree.takes_tree_mask", lambda model: False)
    new = perturbed_copy(tiny_model, scale=0.05)
    table = exact_kl(new, tiny_model, tiny_tokenizer, PROMPTS, RESPONSES, **KW)
    forward, reverse = _direct(new, tiny_model, tiny_tokenizer)
    np.testing.assert_allclose(table.forward, forward, rtol=0, atol=1e-5)
    np.testing.assert_allclose(table.reverse, reverse, rtol=0, atol=1e-5)
    assert (table.forward > 0).all() and (table.reverse > 0).all()
    assert not np.allclose(table.forward, table.reverse)  # the two directions differ
    assert (table.num_tokens > 0).all()


def test_exact_kl_of_a_model_with_itself_is_zero_never_negative(tiny_model, tiny_tokenizer):
    table = exact_kl(tiny_model, copy.deepcopy(tiny_model), tiny_tokenizer, PROMPTS, RESPONSES,
                     **KW)
    assert (table.forward >= 0).all() and (table.reverse >= 0).all()
    assert table.forward.max() < 1e-6 and table.reverse.max() < 1e-6


def test_position_kl_is_clamped_at_zero_and_matches_scipy():
    import torch
    from scipy import stats

    a = torch.tensor([[1.0, 2.0, 0.5], [0.3, 0.3, 0.3]])
    b = torch.tensor([[0.0, 2.5, 1.0], [0.3, 0.3, 0.3]])
    f, r = position_kl(a, b)
    pa, pb = a.softmax(-1).numpy(), b.softmax(-1).numpy()
    assert f[0].item() == pytest.approx(stats.entropy(pa[0], pb[0]), abs=1e-6)
    assert r[0].item() == pytest.approx(stats.entropy(pb[0], pa[0]), abs=1e-6)
    assert f[1].item() == 0.0 and r[1].item() == 0.0


def test_ranks_split_batches_and_sum_to_the_single_process_table(tiny_model, tiny_tokenizer):
    new = perturbed_copy(tiny_model, scale=0.05)
    whole = exact_kl(new, tiny_model, tiny_tokenizer, PROMPTS, RESPONSES, **KW)
    parts = [exact_kl(new, tiny_model, tiny_tokenizer, PROMPTS, RESPONSES, shard=(r, 2), **KW)
             for r in range(2)]
    assert all(p.forward.any() for p in parts)  # each rank did some of the work
    np.testing.assert_array_equal(parts[0].forward + parts[1].forward, whole.forward)
    np.testing.assert_array_equal(parts[0].num_tokens + parts[1].num_tokens, whole.num_tokens)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_fsdp2_sharded_models_give_the_replica_table(tiny_model, tiny_tokenizer):
    import torch.distributed as dist

    from cream_plugin.forward.placement import shard_for_scoring

    new = perturbed_copy(tiny_model, scale=0.05)
    replica = exact_kl(new, tiny_model, tiny_tokenizer, PROMPTS, RESPONSES, **KW)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)
    try:
        sharded_new = shard_for_scoring(copy.deepcopy(new), "cpu", 1)
        sharded_old = shard_for_scoring(copy.deepcopy(tiny_model), "cpu", 1)
        sharded = exact_kl(sharded_new, sharded_old, tiny_tokenizer, PROMPTS, RESPONSES, **KW)
    finally:
        dist.destroy_process_group()
    np.testing.assert_allclose(sharded.forward, replica.forward, rtol=0, atol=1e-6)
    np.testing.assert_allclose(sharded.reverse, replica.reverse, rtol=0, atol=1e-6)
