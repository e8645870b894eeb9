"""Log-prob scoring with each prompt run once: a prompt's responses are branches of one tree.

``response_logps`` scores N responses per prompt; run as separate sequences, every prompt runs N
times. Here the sequences that share everything before their last prompt token form a group:
that shared start is the prefix of a tree (:mod:`cream_plugin.forward.prefix_tree`) and each
sequence's rest, from its last prompt token on, is a branch, so every predicted completion token is
predicted from inside its own branch, seeing exactly its own sequence. Used by
``logprobs._score_batches`` (and the exact-KL pass, :mod:`cream_plugin.forward.exact_kl`) for
models with a plain LM head that take a tree mask; the sums equal the padded path's to float
rounding (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cream_plugin.forward.decoding import length_groups
from cream_plugin.forward.lm_head import FORWARD_STATS, head_logps
from cream_plugin.forward.prefix_tree import build_tree_rows

Sequence_ = tuple[list[int], int]
"""(token ids, first completion position) of one (prompt, response)."""
Tree = list[tuple[int, list[int]]]
"""One forward: groups of (prefix length, sequence indices)."""


def plan_prompt_trees(sequences: list[Sequence_], order: list[int], batch_size: int
                      ) -> list[Tree]:
    """The forwards, a function of the sequences only (so sharded ranks split the same plan):
    groups by shared prefix (in ``order``), at most ``batch_size`` sequences a group, then
    groups of similar size batched with at most 15% padding and about ``batch_size`` sequences
    a forward."""
    by_prefix: dict[tuple[int, ...], list[int]] = {}
    for i in order:
        ids, start = sequences[i]
        by_prefix.setdefault(tuple(ids[:max(start - 1, 0)]), []).append(i)
    groups = [(len(prefix), members[k:k + batch_size])
              for prefix, members in by_prefix.items()
              for k in range(0, len(members), batch_size)]
    sizes = [p + sum(len(sequences[i][0]) - p for i in members) for p, members in groups]
    widest = max(len(members) for _, members in groups)
    plan = length_groups(sizes, solo_length=None, max_rows=max(1, batch_size // widest))
    return [[groups[g] for g in batch] for batch in plan]


@dataclass
class TreeStates:
    """One tree forward's final hidden states at the positions that predict completion tokens,
    with each position's target token and the index in ``order`` of its sequence."""

    states: torch.Tensor   # (positions, hidden)
    targets: torch.Tensor  # (positions,)
    slots: torch.Tensor    # (positions,)
    order: list[int]       # sequence indices, in slot order
    computed: int          # positions the forward computed (padding included)


def tree_states(model: Any, pad_id: int, sequences: list[Sequence_], tree: Tree) -> TreeStates:
    """Run one tree forward of ``model``'s backbone; the completion positions' hidden states.
    The positions depend on the sequences only, so two models' states line up one to one."""
    layout = build_tree_rows(
        [(sequences[members[0]][0][:p], [sequences[i][0][p:] for i in members])
         for p, members in tree], pad_id, rows=[[g] for g in range(len(tree))])
    rows: list[int] = []
    cols: list[int] = []
    targets: list[int] = []
    slots: list[int] = []  # which sequence (position in the forward) each prediction belongs to
    order = [i for _, members in tree for i in members]
    slot = 0
    for g, (p, members) in enumerate(tree):
        for b, i in enumerate(members):
            ids, start = sequences[i]
            first = layout.branch_columns[g][b].start  # holds ids[p]; column first + k: ids[p + k]
            for k in range(start - 1 - p, len(ids) - 1 - p):  # predicts ids[p + k + 1]
                rows.append(layout.group_rows[g])
                cols.append(first + k)
                targets.append(ids[p + k + 1])
                slots.append(slot)
            slot += 1
    device = next(model.parameters()).device
    hidden = model.base_model(input_ids=layout.input_ids.to(device),
                              attention_mask=layout.attention_mask.to(device),
                              position_ids=layout.position_ids.to(device),
                              use_cache=False).last_hidden_state
    picked = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
    return TreeStates(picked, torch.tensor(targets, dtype=torch.long, device=device),
                      torch.tensor(slots, dtype=torch.long, device=device), order,
                      layout.input_ids.numel())


def score_prompt_tree(model: Any, pad_id: int, sequences: list[Sequence_], tree: Tree
                      ) -> dict[int, tuple[float, int]]:
    """(summed completion log-prob, completion tokens) of every sequence of one forward."""
    found = tree_states(model, pad_id, sequences, tree)
    order = found.order
    per_token = head_logps(model, found.states, found.targets)
    sums = torch.zeros(len(order), dtype=torch.float32, device=per_token.device).index_add_(
        0, found.slots, per_token).cpu().tolist()
    real = sum(p + sum(len(sequences[i][0]) - p for i in members) for p, members in tree)
    FORWARD_STATS["sequences"] += len(order)
    FORWARD_STATS["tokens"] += real
    FORWARD_STATS["padding"] += found.computed - real
    FORWARD_STATS["scored"] += len(found.targets)
    return {i: (float(sums[k]), len(sequences[i][0]) - sequences[i][1])
            for k, i in enumerate(order)}
