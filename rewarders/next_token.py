"""The judge's next-token log-probabilities at the end of each judge prompt, one forward per prompt.

A judge whose verdict is read from logits (the probability-scored rubric judge, the pair judge)
needs, for every judge prompt, the distribution of the token that would come next. The prompts of
one request share their start (the rubric and the request, up to the response), so for models
that take a tree mask (:func:`cream_plugin.forward.prefix_tree.takes_tree_mask`) the prompts of a
group form a prefix tree and that start runs once; other models get right-padded batches. Either way
only the last position of each prompt is projected through the LM head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cream_plugin.errors import DataError

if TYPE_CHECKING:
    import torch


def logits_at(model: Any, last: Sequence[tuple[int, int]], **inputs: Any) -> torch.Tensor:
    """Full-vocabulary logits (float32) at each (row, column) of ``last``; only those columns go
    through the LM head."""
    import torch

    columns = sorted({c for _, c in last})
    device = inputs["input_ids"].device
    keep = torch.tensor(columns, dtype=torch.long, device=device)
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits  # (rows, cols, vocab)
    where = {c: k for k, c in enumerate(columns)}
    return torch.stack([logits[r, where[c]] for r, c in last]).float()


def padded_last_logits(model: Any, chunk: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Full-vocabulary logits at the last token of each sequence, from one right-padded batch."""
    import torch

    device = next(model.parameters()).device
    lengths = [len(s) for s in chunk]
    if min(lengths) == 0:
        raise DataError("judge: an empty judge prompt")
    width = max(lengths)
    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(chunk), width), dtype=torch.long, device=device)
    for row, seq in enumerate(chunk):
        ids[row, :len(seq)] = torch.tensor(list(seq), dtype=torch.long, device=device)
        mask[row, :len(seq)] = 1
    keep = torch.tensor(lengths, device=device).sub(1).unsqueeze(1)
    return model(input_ids=ids, attention_mask=mask, use_cache=False,
                 logits_to_keep=keep).logits[:, -1, :].float()


def _shared_start(sequences: Sequence[Sequence[int]]) -> int:
    from cream_plugin.forward.prefix_tree import common_prefix_length

    shared = min(len(s) for s in sequences) - 1
    for other in sequences[1:]:
        shared = min(shared, common_prefix_length(sequences[0], other))
    return max(shared, 0)


def tree_last_logits(model: Any, groups: Sequence[Sequence[Sequence[int]]],
                     pad_id: int) -> torch.Tensor:
    """Full-vocabulary logits at the last token of every sequence of every group (groups in
    order, sequences in order), each group's common start run once (a prefix tree)."""
    from cream_plugin.forward.prefix_tree import build_tree_rows

    device = next(model.parameters()).device
    layout = []
    for members in groups:
        if any(len(s) == 0 for s in members):
            raise DataError("judge: an empty judge prompt")
        p = _shared_start(members)
        layout.append((members[0][:p], [s[p:] for s in members]))
    tree = build_tree_rows(layout, pad_id)
    return logits_at(model, tree.last_columns(), input_ids=tree.input_ids.to(device),
                     position_ids=tree.position_ids.to(device),
                     attention_mask=tree.attention_mask.to(device))


def next_token_log_probs(model: Any, sequences: Sequence[Sequence[int]], token_ids: Sequence[int],
                         pad_id: int, *, batch_size: int = 8,
                         group_of: Sequence[int] | None = None,
                         progress: bool = False) -> torch.Tensor:
    """Log-probabilities (full-vocabulary softmax) of ``token_ids`` as the next token after each
    sequence, shape (len(sequences), len(token_ids)), float32, no graph.

    ``group_of[i]`` names the group of sequence i (e.g. its request); with a model that takes a
    tree mask, a group's sequences (at most ``batch_size`` a forward) share their common start.
    """
    import torch
    from tqdm.auto import tqdm

    from cream_plugin.forward.prefix_tree import takes_tree_mask

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    wanted = torch.tensor(list(token_ids), dtype=torch.long, device=device)
    out = torch.zeros((len(sequences), len(wanted)), dtype=torch.float32)
    tree = group_of is not None and takes_tree_mask(model)
    if tree:
        assert group_of is not None
        by_group: dict[int, list[int]] = {}
        for i, g in enumerate(group_of):
            by_group.setdefault(int(g), []).append(i)
        batches: list[list[list[int]]] = [[]]
        for members in by_group.values():
            for k in range(0, len(members), batch_size):
                part = members[k:k + batch_size]
                if sum(len(m) for m in batches[-1]) + len(part) > batch_size:
                    batches.append([])
                batches[-1].append(part)
        batches = [b for b in batches if b]
    else:
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        batches = [[order[k:k + batch_size]] for k in range(0, len(order), batch_size)]
    with torch.no_grad():
        for batch in tqdm(batches, desc="judge scores", unit="batch", disable=not progress):
            if tree:
                logits = tree_last_logits(model, [[sequences[i] for i in m] for m in batch],
                                          pad_id)
            else:
                logits = padded_last_logits(model, [sequences[i] for i in batch[0]], pad_id)
            rows = [i for members in batch for i in members]
            picked = torch.log_softmax(logits, dim=-1).index_select(-1, wanted)
            out[torch.tensor(rows, dtype=torch.long)] = picked.cpu()
    return out
