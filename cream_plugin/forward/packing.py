"""Packed-row layouts: sequences of a batch laid into as few rows as fit a width (first-fit
decreasing), each with ``position_ids`` from 0, and the map back to the padded layout. The
forward that trains through them is :mod:`cream_plugin.forward.fast_forward`; prefix trees
(:mod:`cream_plugin.forward.prefix_tree`) build on the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def plan_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Sequence indices per row, longest first, each row's total length <= ``capacity``."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in order:
        for r, used in enumerate(fill):
            if used + lengths[i] <= capacity:
                rows[r].append(i)
                fill[r] += lengths[i]
                break
        else:
            rows.append([i])
            fill.append(lengths[i])
    return rows


@dataclass
class PackedBatch:
    """One padded batch laid out in packed rows, and the map back to the padded layout."""

    input_ids: torch.Tensor  # (rows, width)
    position_ids: torch.Tensor  # (rows, width); every sequence (and a row's pad tail) from 0
    labels: torch.Tensor  # (rows, width); -100 at every sequence start and in the pad tail
    source: torch.Tensor  # (n, W - 1): flat index into (rows, width - 1) outputs, -1 = none
    attention_mask: torch.Tensor | None = None  # a 4-D tree mask (prefix_tree), else None

    def unpack(self, values: torch.Tensor) -> torch.Tensor:
        """Per-token outputs (rows, width - 1) -> the padded layout (n, W - 1), zero elsewhere."""
        flat = values.reshape(-1)
        valid = self.source >= 0
        picked = flat[self.source.clamp(min=0)]
        return torch.where(valid, picked, torch.zeros((), dtype=picked.dtype,
                                                      device=picked.device))


def right_padded_lengths(attention_mask: torch.Tensor) -> list[int] | None:
    """Each row's length when the mask is ones then zeros (right padding), else None."""
    if attention_mask.dim() != 2:
        return None
    lengths = attention_mask.sum(dim=1)
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
    expected = (positions.unsqueeze(0) < lengths.unsqueeze(1)).to(attention_mask.dtype)
    if not torch.equal(expected, attention_mask) or bool((lengths == 0).any()):
        return None
    return [int(x) for x in lengths.tolist()]


def lay_out_packed(sequences: Sequence[Sequence[int] | torch.Tensor], capacity: int,
                   pad_id: int, device: torch.device | str = "cpu"
                   ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Packed rows of ``sequences`` (:func:`plan_rows` within ``capacity``): token ids, position
    ids restarting at 0 per sequence (and for a row's pad tail, a segment of its own so no token
    attends to it), and each sequence's (row, first column)."""
    lengths = [len(seq) for seq in sequences]
    rows = plan_rows(lengths, capacity)
    width = max(sum(lengths[i] for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    positions = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    starts = [(0, 0)] * len(sequences)
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            ids[r, start:start + lengths[i]] = torch.as_tensor(sequences[i], device=device)
            positions[r, start:start + lengths[i]] = torch.arange(lengths[i], device=device)
            starts[i] = (r, start)
            start += lengths[i]
        positions[r, start:] = torch.arange(width - start, device=device)
    return ids, positions, starts


def pack_batch(input_ids: torch.Tensor, lengths: list[int], labels: torch.Tensor,
               pad_id: int = 0) -> PackedBatch:
    """Pack the right-padded ``input_ids`` / ``labels`` (n, W) into rows of width <= W."""
    n, padded_width = input_ids.shape
    device = input_ids.device
    ids, pos, starts = lay_out_packed([input_ids[i, :lengths[i]] for i in range(n)],
                                      padded_width, pad_id, device)
    ids = ids.to(input_ids.dtype)
    width = ids.size(1)
    lab = torch.full(ids.shape, -100, dtype=labels.dtype, device=device)
    source = torch.full((n, padded_width - 1), -1, dtype=torch.long, device=device)
    for i, (r, start) in enumerate(starts):
        length = lengths[i]
        lab[r, start + 1:start + length] = labels[i, 1:length]
        # padded output t (label t + 1) sits at packed output start + t
        source[i, :length - 1] = r * (width - 1) + start + torch.arange(length - 1, device=device)
    return PackedBatch(ids, pos, lab, source)
