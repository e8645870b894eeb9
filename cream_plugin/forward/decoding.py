"""A batched decode loop over a pre-allocated KV cache, shared by sampling and evaluation.

``generate`` with a ``DynamicCache`` concatenates every layer's keys and values at every step
(a copy of the whole cache per token) and keeps every row in the batch until the last one stops.
Here the cache of each layer is one buffer sized for prompt + new tokens, a step writes its
token's keys and values in place, and a row that has finished leaves the batch (and the cache)
at once, so the rows still running are the only ones paying for forwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from cream_plugin.forward.kv_cache import PreallocatedLayer, make_cache

# Pick the next token of each running row from its last-position logits (rows, vocab).
ChooseTokens = Callable[[Any], Any]
# Which running rows are finished: (row indices into the batch, tokens so far, step) -> bool mask.
RowsFinished = Callable[[Any, Any, int], Any]
# Called with the positions (into the running rows) that stay after some rows finished.
RowsKept = Callable[[Any], None]


def length_groups(
    lengths: Sequence[int],
    max_padding: float = 0.15,
    solo_length: int | None = 256,
    max_rows: int | None = None,
) -> list[list[int]]:
    """Row indices grouped into batches, longest first, each padded by at most ``max_padding``
    of its real tokens and holding at most ``max_rows`` rows.

    With ``solo_length``, a row of that many tokens or more is a group of its own: it is matmul
    work enough for full speed, and without padding it needs no attention mask (the masked
    attention path costs ~25% more at 1,000 tokens).
    """
    order = sorted(range(len(lengths)), key=lambda r: (-lengths[r], r))
    groups: list[list[int]] = []
    real = 0
    for r in order:
        if groups and _joins(lengths[groups[-1][0]], len(groups[-1]), real, lengths[r],
                             max_padding, solo_length, max_rows):
            groups[-1].append(r)
            real += lengths[r]
        else:
            groups.append([r])
            real = lengths[r]
    return groups


def _joins(head: int, rows: int, real: int, length: int, max_padding: float,
           solo_length: int | None, max_rows: int | None) -> bool:
    if solo_length is not None and head >= solo_length:
        return False
    if max_rows is not None and rows >= max_rows:
        return False
    return head * (rows + 1) <= (1 + max_padding) * (real + length)


def prefill(model: Any, input_ids: Any, attention_mask: Any, capacity: int) -> tuple[Any, Cache]:
    """Last-position logits (rows, vocab) of a left-padded batch and its cache.

    Rows of very different lengths (5-shot GSM8K contexts range over 2x) are run in groups of
    similar length (``length_groups``), so almost no forward is spent on padding; their keys and
    values are then laid out as the left-padded batch would hold them (same positions, padding
    masked).
    """
    import torch

    cache = make_cache(model, capacity)
    positions = (attention_mask.cumsum(dim=-1) - 1).clamp_min(0)
    lengths = attention_mask.sum(dim=-1).tolist()
    groups = length_groups(lengths)
    if len(groups) == 1 or not isinstance(cache.layers[0], PreallocatedLayer):
        logits = model(input_ids=input_ids, attention_mask=attention_mask,
                       position_ids=positions, past_key_values=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1, :]
        return logits, cache
    width, rows = input_ids.shape[1], input_ids.shape[0]
    logits = None
    for group in groups:
        span = slice(width - lengths[group[0]], width)
        index = torch.tensor(group, device=input_ids.device)
        part = DynamicCache(config=model.config)
        out = model(input_ids=input_ids[index, span], attention_mask=attention_mask[index, span],
                    position_ids=positions[index, span], past_key_values=part, use_cache=True,
                    logits_to_keep=1).logits[:, -1, :]
        if logits is None:
            logits = out.new_empty((rows, out.shape[-1]))
        logits[index] = out
        for layer, filled in zip(cache.layers, part.layers, strict=True):
            assert isinstance(layer, PreallocatedLayer) and isinstance(filled, DynamicLayer)
            layer.write_rows(index, filled.keys, filled.values, width, rows)
    return logits, cache


def decode(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    *,
    max_new_tokens: int,
    choose: ChooseTokens,
    finished: RowsFinished,
    kept: RowsKept | None = None,
    row_source: Any = None,
) -> Any:
    """New tokens (rows, max_new_tokens) of a left-padded batch, -1 after a row's last token.

    One forward per step over the rows still running, logits for the last position only. A row
    leaves the batch right after the step at which ``finished`` says so (its finishing token is
    kept in the output); ``kept`` lets a caller drop its own per-row state alongside.
    ``row_source`` (a 1-D index into ``input_ids``) starts several rows from one prompt: each
    distinct prompt is run through the model once and its cache copied to its rows.
    """
    import torch

    rows = input_ids.shape[0] if row_source is None else int(row_source.numel())
    out = torch.full((rows, max_new_tokens), -1, dtype=torch.long)
    alive = torch.arange(rows)
    mask = attention_mask
    positions = mask.sum(dim=-1, keepdim=True)  # each row's next position: its length
    with torch.inference_mode():
        logits, cache = prefill(model, input_ids, mask, input_ids.shape[1] + max_new_tokens)
        if row_source is not None:
            source = row_source.to(mask.device)
            logits, mask, positions = logits[source], mask[source], positions[source]
            cache.batch_select_indices(source)
        for step in range(max_new_tokens):
            tokens = choose(logits)
            out[alive, step] = tokens.cpu()
            done = finished(alive, out, step)
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                alive, tokens = alive[keep.cpu()], tokens[keep.to(tokens.device)]
                keep = keep.to(mask.device)
                mask, positions = mask[keep], positions[keep]
                cache.batch_select_indices(keep)
                if kept is not None:
                    kept(keep)
            if step + 1 == max_new_tokens:
                break
            logits, mask = _step(model, tokens, mask, positions, cache)
            positions = positions + 1
    return out


# Which running rows are finished: (row indices, each row's tokens so far) -> bool mask.
StreamFinished = Callable[[list[int], list[list[int]]], Any]


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Token lists as one left-padded batch: ``(input_ids, attention_mask)``, both long."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, prompt in enumerate(prompts):
        ids[r, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        mask[r, width - len(prompt) :] = 1
    return ids, mask


def decode_stream(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    choose: ChooseTokens,
    finished: StreamFinished,
    pad_id: int = 0,
    on_done: Callable[[int], None] | None = None,
) -> list[list[int]] | None:
    """New tokens of every prompt, decoded with continuous batching (``None`` when the model's
    cache cannot be pre-allocated; use ``decode`` then).

    Up to ``batch_size`` rows run at once; when half of them have finished, the next prompts
    (in the given order) are prefilled and join the running batch, so rows that run long do not
    leave the batch nearly empty for the rest of their tokens, as they do in fixed batches.
    A row stops after the token at which ``finished`` says so, or after ``max_new_tokens``.
    """
    import torch

    if not prompts:
        return []
    device = next(model.parameters()).device
    results: list[list[int]] = [[] for _ in prompts]
    pending = 0
    alive: list[int] = []
    cache: Any = None
    mask: Any = None
    positions: Any = None
    logits: Any = None
    with torch.inference_mode():
        while pending < len(prompts) or alive:
            if pending < len(prompts) and len(alive) <= batch_size // 2:
                take = list(range(pending, min(len(prompts), pending + batch_size - len(alive))))
                pending = take[-1] + 1
                ids, new_mask = left_padded([prompts[i] for i in take], pad_id)
                ids, new_mask = ids.to(device), new_mask.to(device)
                new_logits, new_cache = prefill(
                    model, ids, new_mask, ids.shape[1] + max_new_tokens)
                if not all(isinstance(layer, PreallocatedLayer) for layer in new_cache.layers):
                    return None
                new_positions = new_mask.sum(dim=-1, keepdim=True)
                if cache is None:
                    cache, mask, positions, logits = new_cache, new_mask, new_positions, new_logits
                else:
                    wide = 0
                    for layer, part in zip(cache.layers, new_cache.layers, strict=True):
                        assert isinstance(part, PreallocatedLayer)
                        wide = layer.join_rows(part.keys, part.values, room=max_new_tokens)
                    mask = torch.cat([_pad_left(mask, wide), _pad_left(new_mask, wide)], dim=0)
                    positions = torch.cat([positions, new_positions], dim=0)
                    logits = torch.cat([logits, new_logits], dim=0)
                alive += take
            tokens = choose(logits)
            for row, token in zip(alive, tokens.tolist(), strict=True):
                results[row].append(int(token))
            done = finished(alive, results).to(torch.bool)
            done |= torch.tensor([len(results[r]) >= max_new_tokens for r in alive])
            if bool(done.any()):
                if on_done is not None:
                    for r in done.nonzero().squeeze(1).tolist():
                        on_done(alive[r])
                keep = (~done).nonzero().squeeze(1)
                alive = [alive[r] for r in keep.tolist()]
                if not alive:
                    cache = None
                    continue
                keep = keep.to(device)
                tokens, mask, positions = tokens[keep], mask[keep], positions[keep]
                cache.batch_select_indices(keep)
                lead = int(mask.argmax(dim=1).min())  # columns every row has as left padding
                if lead:
                    for layer in cache.layers:
                        layer.trim_front(lead)
                    mask = mask[:, lead:]
            logits, mask = _step(model, tokens, mask, positions, cache)
            positions = positions + 1
    return results


def _step(model: Any, tokens: Any, mask: Any, positions: Any, cache: Cache) -> tuple[Any, Any]:
    """One decode step: each running row's new token at its position (rows, 1); returns the
    last-position logits and the attention mask grown by that token's column."""
    import torch

    mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
    logits = model(
        input_ids=tokens[:, None],
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1, :]
    return logits, mask


def _pad_left(mask: Any, width: int) -> Any:
    """``mask`` (rows, w) with zero columns added on the left up to ``width``."""
    import torch

    short = width - mask.shape[1]
    if short <= 0:
        return mask
    return torch.cat([mask.new_zeros((mask.shape[0], short)), mask], dim=1)
