"""Exact per-position KL between two models, summed over the whole vocabulary, on given responses.

At every scored position of a response (the completion tokens DPO trains on, tokenised as
:mod:`cream_plugin.forward.logprobs` does), both models' next-token distributions are compared in
full: ``KL(p || q) = sum_v p(v) (log p(v) - log q(v))`` and the reverse. Unlike the Monte-Carlo
log-ratio of a sampled token, this is never negative and has no sampling noise at a position; the
only randomness left is which contexts were sampled.

The two models' per-position data cannot be cached by the log-prob passes (a full distribution
per position), so this is a dedicated pass holding both models: per batch, each backbone runs
once (as prompt trees, each prompt once, for models that take a tree mask, like the log-prob
stages; else right-padded rows), and only the completion positions' hidden states go through the
two LM heads, a chunk of positions at a time, so no (batch, length, vocab) tensor is built. It
costs one forward of each model over the responses. Works with replicas (batches split across
ranks) and with FSDP2-sharded scoring (every rank steps through every batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cream_plugin.errors import DataError
from cream_plugin.plugins.interfaces import Prompt

_KL_CHUNK = 256  # positions per LM-head chunk: 4 (chunk, vocab) float32 tensors live at once


@dataclass
class KLTable:
    """(P, N) per-response sums over scored positions: ``forward`` of KL(p || q), ``reverse`` of
    KL(q || p), and ``num_tokens`` (positions)."""

    forward: np.ndarray
    reverse: np.ndarray
    num_tokens: np.ndarray


def position_kl(logits_p: Any, logits_q: Any) -> tuple[Any, Any]:
    """Per-row KL(p || q) and KL(q || p) in nats of two (rows, vocab) logit tensors, float32,
    clamped at 0 (rounding can leave -1e-9 where the distributions agree)."""
    logp = logits_p.float().log_softmax(dim=-1)
    logq = logits_q.float().log_softmax(dim=-1)
    gap = logp - logq
    forward = (logp.exp() * gap).sum(dim=-1).clamp_min(0.0)
    reverse = (logq.exp() * -gap).sum(dim=-1).clamp_min(0.0)
    return forward, reverse


def _scored_states(model: Any, input_ids: Any, attention: Any, mask: Any) -> Any:
    """A callable giving the logits of scored positions [k, k + size): through the bare LM head
    for plain heads; otherwise the model's own logits (built for this batch only)."""
    from cream_plugin.forward.logprobs import plain_head

    target = _base(model)
    if plain_head(target):
        hidden = target.base_model(input_ids=input_ids, attention_mask=attention,
                                   use_cache=False).last_hidden_state[:, :-1][mask]
        head = target.get_output_embeddings()
        return lambda k, size: head(hidden[k:k + size])
    logits = model(input_ids=input_ids, attention_mask=attention,
                   use_cache=False).logits[:, :-1][mask]
    return lambda k, size: logits[k:k + size]


Positions = tuple[Callable[[int, int], Any], Callable[[int, int], Any], Any, list[int]]
"""Per batch: the two models' logits of scored positions [k, k + size), each position's slot
(index into the members) and the members (sequence indices)."""


def _padded_positions(model_p: Any, model_q: Any, pad_id: int,
                      sequences: list[tuple[list[int], int]], batch: list[int],
                      device: Any) -> Positions:
    """Right-padded rows, each response with its prompt."""
    import torch

    width = len(sequences[batch[0]][0])
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)
    for row, idx in enumerate(batch):
        ids, start = sequences[idx]
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[row, : len(ids)] = 1
        scored[row, start : len(ids)] = True
    input_ids, attention = input_ids.to(device), attention.to(device)
    mask = scored[:, 1:].to(device)  # position j predicts token j + 1
    return (_scored_states(model_p, input_ids, attention, mask),
            _scored_states(model_q, input_ids, attention, mask), mask.nonzero()[:, 0], batch)


def _tree_positions(model_p: Any, model_q: Any, pad_id: int,
                    sequences: list[tuple[list[int], int]], tree: Any) -> Positions:
    """Each prompt once, its responses as branches (:mod:`cream_plugin.forward.prompt_trees`): the
    positions are a function of the sequences, so both models' states line up."""
    from cream_plugin.forward.prompt_trees import tree_states

    found = [tree_states(_base(m), pad_id, sequences, tree) for m in (model_p, model_q)]
    heads = [_base(m).get_output_embeddings() for m in (model_p, model_q)]
    return (lambda k, size: heads[0](found[0].states[k:k + size]),
            lambda k, size: heads[1](found[1].states[k:k + size]), found[0].slots,
            found[0].order)


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _batch_kl(positions: Positions, sequences: list[tuple[list[int], int]], device: Any
              ) -> dict[int, tuple[float, float, int]]:
    """Summed KL both ways of every member of one batch, a chunk of positions at a time."""
    import torch

    logits_p, logits_q, slots, members = positions
    total = int(slots.shape[0])
    forward = torch.empty(total, dtype=torch.float64, device=device)
    reverse = torch.empty(total, dtype=torch.float64, device=device)
    for k in range(0, total, _KL_CHUNK):
        f, r = position_kl(logits_p(k, _KL_CHUNK), logits_q(k, _KL_CHUNK))
        forward[k:k + _KL_CHUNK], reverse[k:k + _KL_CHUNK] = f.double(), r.double()
    zeros = torch.zeros(len(members), dtype=torch.float64, device=device)
    f_sum = zeros.clone().index_add_(0, slots, forward).cpu().tolist()
    r_sum = zeros.index_add_(0, slots, reverse).cpu().tolist()
    return {idx: (f_sum[k], r_sum[k], len(sequences[idx][0]) - sequences[idx][1])
            for k, idx in enumerate(members)}


def exact_kl(
    model_p: Any,
    model_q: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    responses: Sequence[Sequence[str]],
    *,
    batch_size: int = 16,
    max_length: int | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = False,
) -> KLTable:
    """Summed exact KL(p || q) and KL(q || p) over the scored positions of every response.

    ``shard=(rank, world)`` computes only this rank's batches of the single-process plan and
    leaves the other entries 0, so the ranks' tables sum to the single-process table.
    """
    import torch
    from tqdm.auto import tqdm

    from cream_plugin.forward.decoding import length_groups
    from cream_plugin.forward.logprobs import (
        check_table,
        plain_head,
        scored_sequence,
        tokenize_prompt,
    )
    from cream_plugin.forward.placement import root_gathered
    from cream_plugin.forward.prefix_tree import takes_tree_mask
    from cream_plugin.forward.prompt_trees import plan_prompt_trees

    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
    n = check_table(prompts, responses)
    shape = (len(prompts), n)
    table = KLTable(np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=np.int64))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
        tokenizer.eos_token_id)
    if pad_id is None:
        raise DataError("the tokenizer has neither a pad nor an eos token")
    sequences, places = [], []
    for i, prompt in enumerate(prompts):
        prompt_ids = tokenize_prompt(tokenizer, prompt)
        for j, response in enumerate(responses[i]):
            ids, start = scored_sequence(tokenizer, prompt, response, prompt_ids, max_length)
            if len(ids) > start:
                sequences.append((ids, start))
                places.append((i, j))
    if not sequences:
        return table
    device = next(model_p.parameters()).device
    trees = all(plain_head(_base(m)) and takes_tree_mask(_base(m)) for m in (model_p, model_q))
    plan: list[Any]
    if trees:
        longest = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
        plan = plan_prompt_trees(sequences, longest, batch_size)

        def positions(batch: Any) -> Positions:
            return _tree_positions(model_p, model_q, pad_id, sequences, batch)
    else:
        plan = length_groups([len(s[0]) for s in sequences], solo_length=None,
                             max_rows=batch_size)

        def positions(batch: Any) -> Positions:
            return _padded_positions(model_p, model_q, pad_id, sequences, batch, device)
    modes = (model_p.training, model_q.training)
    model_p.eval()
    model_q.eval()
    rank, world = shard
    try:
        with torch.no_grad(), root_gathered(model_p), root_gathered(model_q):
            for batch in tqdm(plan[rank::world], desc="exact KL", unit="batch",
                              disable=not progress):
                for idx, (f, r, t) in _batch_kl(positions(batch), sequences, device).items():
                    i, j = places[idx]
                    table.forward[i, j], table.reverse[i, j], table.num_tokens[i, j] = f, r, t
    finally:
        model_p.train(modes[0])
        model_q.train(modes[1])
    return table
