"""Rows that run a shared prefix once and its branches after it, under a 4-D attention mask.

Several forwards of a run feed the model sequences that begin alike: the choices of a
multiple-choice question after its context (``cream-hf``), or SCIR's two judge prompts of a pair,
which differ only from the first response on. Laid out as a tree, a group is one stretch of
columns: the prefix, then each branch at the positions it has in its own full sequence
(``len(prefix)`` on). The mask lets a prefix token see the earlier prefix, and a branch token the
whole prefix and its own earlier tokens, never another branch or group; a padding column sees
only itself, so no softmax row is empty. Every token therefore sees exactly the keys and positions
it sees when its sequence runs alone, and the prefix is computed once per group instead of once
per branch.

Needs a model whose attention takes a custom 4-D mask over full attention: ``sdpa`` or ``eager``,
no sliding windows or hybrid layers (:func:`takes_tree_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cream_plugin.forward.packing import PackedBatch, plan_rows

Group = tuple[Sequence[int], Sequence[Sequence[int]]]
"""A prefix and its branches (token ids)."""


def _text_config(model: Any) -> Any:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    return config or model.config


def plain_attention(model: Any) -> bool:
    """Whether every layer attends to every earlier position (no sliding window, no hybrid
    layers)."""
    config = _text_config(model)
    layer_types = getattr(config, "layer_types", None) or []
    return not getattr(config, "sliding_window", None) and all(
        t == "full_attention" for t in layer_types)


def takes_tree_mask(model: Any) -> bool:
    """Whether a 4-D boolean mask reproduces each sequence's own attention in this model."""
    implementation = getattr(_text_config(model), "_attn_implementation", None)
    return implementation in ("sdpa", "eager") and plain_attention(model)


def common_prefix_length(first: Sequence[Any], second: Sequence[Any]) -> int:
    """Tokens the two sequences share from the start, leaving each at least its last token (the
    position that is read) as a branch of its own."""
    limit = min(len(first), len(second)) - 1
    shared = 0
    while shared < limit and first[shared] == second[shared]:
        shared += 1
    return shared


@dataclass
class TreeRows:
    """Groups laid out in rows; ``branch_columns[g][b]`` lists branch b's columns in its row."""

    input_ids: torch.Tensor  # (rows, width)
    position_ids: torch.Tensor  # (rows, width)
    attention_mask: torch.Tensor  # (rows, 1, width, width), bool, True = may attend
    group_rows: list[int]  # row of each group
    branch_columns: list[list[range]]

    def last_columns(self) -> list[tuple[int, int]]:
        """(row, column) of every branch's last token, groups in order, branches in order."""
        return [(self.group_rows[g], span[-1]) for g, branches in enumerate(self.branch_columns)
                for span in branches]


def build_tree_rows(groups: Sequence[Group], pad_id: int, rows: list[list[int]] | None = None,
                    capacity: int = 0) -> TreeRows:
    """Lay the groups out, several to a row when they fit in ``capacity`` columns or the widest
    group's length (first fit, longest first), or as ``rows`` says (group indices per row)."""
    sizes = [len(prefix) + sum(len(b) for b in branches) for prefix, branches in groups]
    if any(not branches or any(len(b) == 0 for b in branches) for _, branches in groups):
        raise ValueError("every group needs at least one branch, and no branch may be empty")
    rows = rows if rows is not None else plan_rows(sizes, max(capacity, *sizes))
    width = max(sum(sizes[g] for g in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), 1, width, width), dtype=torch.bool)
    group_rows = [0] * len(groups)
    branch_columns: list[list[range]] = [[] for _ in groups]
    for r, row in enumerate(rows):
        start = 0
        for g in row:
            prefix, branches = groups[g]
            group_rows[g] = r
            stretch = list(prefix)
            stretch_pos = list(range(len(prefix)))
            for branch in branches:
                stretch += branch
                stretch_pos += range(len(prefix), len(prefix) + len(branch))
            end = start + len(stretch)
            ids[r, start:end] = torch.tensor(stretch, dtype=torch.long)
            positions[r, start:end] = torch.tensor(stretch_pos, dtype=torch.long)
            shared = start + len(prefix)
            mask[r, 0, start:shared, start:shared] = _causal(len(prefix))
            first = shared
            for branch in branches:
                last = first + len(branch)
                mask[r, 0, first:last, start:shared] = True
                mask[r, 0, first:last, first:last] = _causal(len(branch))
                branch_columns[g].append(range(first, last))
                first = last
            start = end
        pads = torch.arange(start, width)
        mask[r, 0, pads, pads] = True
    return TreeRows(ids, positions, mask, group_rows, branch_columns)


def _causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


def pack_pair_trees(input_ids: torch.Tensor, lengths: list[int], labels: torch.Tensor,
                    pad_id: int = 0) -> PackedBatch:
    """A DPO batch (chosen rows, then rejected rows, right-padded) with each pair's shared prompt
    run once: :func:`cream_plugin.forward.packing.pack_batch`'s contract, plus a tree mask.

    Pair i is rows i and i + n. They share their first ``p`` tokens and labels and token ``p``
    too: the prefix is ``[:p]`` and each branch starts at token ``p``, so the prefix's last column
    predicts token ``p`` for both rows and every other prediction stays inside a branch. The
    second branch's first label is masked (the column before it ends the other branch), and its
    outputs before ``p`` are read from the prefix. Per-token outputs unpack to the padded
    layout, so a shared prediction's gradient is the sum of both rows', as in the padded batch.
    """
    n2, padded_width = input_ids.shape
    if n2 % 2:
        raise ValueError(f"pair trees need chosen and rejected rows, got {n2} rows")
    n = n2 // 2
    ids_rows = [input_ids[i, :lengths[i]].tolist() for i in range(n2)]
    label_rows = [labels[i, :lengths[i]].tolist() for i in range(n2)]
    groups: list[Group] = []
    splits = []
    for i in range(n):
        first = list(zip(ids_rows[i], label_rows[i], strict=True))
        second = list(zip(ids_rows[i + n], label_rows[i + n], strict=True))
        split = max(common_prefix_length(first, second) - 1, 0)
        splits.append(split)
        groups.append((ids_rows[i][:split], [ids_rows[i][split:], ids_rows[i + n][split:]]))
    tree = build_tree_rows(groups, pad_id, capacity=padded_width)
    rows_count, width = tree.input_ids.shape
    device = input_ids.device
    packed_labels = torch.full((rows_count, width), -100, dtype=labels.dtype)
    source = torch.full((n2, padded_width - 1), -1, dtype=torch.long)
    for i, split in enumerate(splits):
        row = tree.group_rows[i]
        start = tree.branch_columns[i][0].start - split  # the group's first column
        base = row * (width - 1)
        for b, which in enumerate((i, i + n)):
            branch, seq = tree.branch_columns[i][b], label_rows[which]
            own = torch.tensor(seq[split:], dtype=labels.dtype)
            packed_labels[row, branch.start + 1:branch.stop] = own[1:]
            if b == 0:  # the prefix and the first branch are one run of columns
                packed_labels[row, start + 1:branch.start + 1] = torch.tensor(
                    seq[1:split + 1], dtype=labels.dtype)
            # padded output t (label t + 1): in the prefix while t < split, else in the branch
            t = torch.arange(lengths[which] - 1)
            column = torch.where(t < split, start + t, branch.start + t - split)
            source[which, :lengths[which] - 1] = base + column
    return PackedBatch(tree.input_ids.to(device), tree.position_ids.to(device),
                       packed_labels.to(device), source.to(device),
                       tree.attention_mask.to(device))
