"""Prefix-tree rows: each branch sees exactly its own sequence, and SCIR's judge pairs scored as
trees give the verdict probabilities and gradients of separate right-padded rows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from cream_plugin.forward.prefix_tree import (
    build_tree_rows,
    common_prefix_length,
    takes_tree_mask,
)
from cream_plugin.rewarders.pairwise_judge import (
    encode_both_orders,
    first_verdict_probs,
    paired_verdict_probs,
    verdict_token_ids,
)
from cream_plugin.testing import PAIR_BAD as BAD
from cream_plugin.testing import PAIR_GOOD as GOOD
from cream_plugin.testing import PAIR_PROMPTS as PROMPTS
from cream_plugin.testing import perturbed_copy


def test_common_prefix_leaves_each_sequence_its_last_token() -> None:
    assert common_prefix_length([1, 2, 3, 4], [1, 2, 9]) == 2
    assert common_prefix_length([1, 2, 3], [1, 2, 3]) == 2  # identical: both keep a branch
    assert common_prefix_length([5], [5, 6]) == 0
    assert common_prefix_length([7, 8], [9]) == 0


def test_layout_mask_and_positions() -> None:
    # group 0: prefix [1, 2], branches [3, 4] and [5]; group 1: no prefix, one branch [6]
    tree = build_tree_rows([([1, 2], [[3, 4], [5]]), ([], [[6]])], pad_id=0, rows=[[0], [1]])
    assert tree.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 0, 0, 0, 0]]
    assert tree.position_ids[0].tolist() == [0, 1, 2, 3, 2]
    assert tree.branch_columns == [[range(2, 4), range(4, 5)], [range(0, 1)]]
    mask = tree.attention_mask[0, 0].int().tolist()
    assert mask == [[1, 0, 0, 0, 0],
                    [1, 1, 0, 0, 0],
                    [1, 1, 1, 0, 0],
                    [1, 1, 1, 1, 0],
                    [1, 1, 0, 0, 1]]  # the second branch never sees the first
    assert tree.attention_mask[1, 0].int().tolist() == torch.eye(5, dtype=torch.int).tolist()
    assert tree.last_columns() == [(0, 3), (0, 4), (1, 0)]


def test_groups_that_fit_share_a_row_block_diagonally() -> None:
    tree = build_tree_rows([([1, 2, 3], [[4], [5]]), ([6], [[7]]), ([8], [[9], [10]])], pad_id=0)
    assert tree.input_ids.shape[0] == 2  # 5 columns, then 2 + 3 in the second row
    row = tree.group_rows[1]
    assert tree.group_rows[2] == row
    assert tree.input_ids[row].tolist() == [8, 9, 10, 6, 7]  # longest first
    second = tree.attention_mask[row, 0]
    assert not second[:3, 3:].any() and not second[3:, :3].any()  # groups never see each other


def test_empty_branch_is_refused() -> None:
    with pytest.raises(ValueError, match="no branch may be empty"):
        build_tree_rows([([1], [[2], []])], pad_id=0)


def test_tree_mask_needs_full_attention_through_sdpa_or_eager(tiny_model) -> None:
    assert takes_tree_mask(tiny_model)

    def model(**config: object) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(**config))

    assert not takes_tree_mask(model(_attn_implementation="flash_attention_2"))
    assert not takes_tree_mask(model(_attn_implementation="sdpa", sliding_window=4096))
    assert not takes_tree_mask(model(_attn_implementation="sdpa",
                                     layer_types=["full_attention", "sliding_attention"]))
    assert takes_tree_mask(model(_attn_implementation="eager", layer_types=["full_attention"]))


@pytest.mark.parametrize("batch_size", [2, 5, 64])
def test_paired_judge_trees_give_the_padded_probabilities_and_gradients(
        tiny_model, tiny_tokenizer, batch_size: int) -> None:
    """Batch 2: one pair per forward; 5: two pairs (rows shared); 64: every pair at once. The
    last pair judges a response against itself, so the two prompts differ in no token."""
    model = perturbed_copy(tiny_model, 0.3)
    forward, backward = encode_both_orders(tiny_tokenizer, [*PROMPTS, PROMPTS[0]],
                                           [*GOOD, GOOD[0]], [*BAD, GOOD[0]])
    assert forward[-1] == backward[-1]
    shared = [common_prefix_length(f, b) for f, b in zip(forward, backward, strict=True)]
    assert min(shared[:-1]) > 10  # the instructions and the request run once
    verdicts = verdict_token_ids(tiny_tokenizer, ("A", "B"))
    pad = tiny_tokenizer.pad_token_id
    padded = first_verdict_probs(model, [*forward, *backward], verdicts, pad, batch_size=4)
    padded.sum().backward()
    want = {name: q.grad.clone() for name, q in model.named_parameters() if q.grad is not None}
    model.zero_grad()
    first, second = paired_verdict_probs(model, forward, backward, verdicts, pad, batch_size)
    torch.cat([first, second]).sum().backward()
    n = len(forward)
    torch.testing.assert_close(first, padded[:n], rtol=0, atol=1e-5)
    torch.testing.assert_close(second, padded[n:], rtol=0, atol=1e-5)
    for name, q in model.named_parameters():
        if name in want:
            torch.testing.assert_close(q.grad, want[name], rtol=1e-4, atol=1e-5)


def _pair_batch(tokenizer: object) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """Chosen rows then rejected rows, right-padded, labels -100 on the prompt: pair 0 shares a
    prompt, pair 1 also the completions' first tokens, pair 2 is one sequence twice, pair 3
    shares nothing, pair 4 shares tokens but not the label mask."""
    encode = tokenizer.encode  # type: ignore[attr-defined]

    def row(prompt: str, completion: str) -> tuple[list[int], list[int]]:
        p = encode(prompt, add_special_tokens=False)
        c = encode(completion, add_special_tokens=False)
        return p + c, [-100] * len(p) + c

    planet, colour = "Which is the largest planet?", "Name a colour:"
    pairs = [(row(planet, " Jupiter is."), row(planet, " Mars.")),
             (row(colour, " the sky is blue"), row(colour, " the grass is green")),
             (row("Say yes.", " yes"), row("Say yes.", " yes")),
             (row("Alpha", " beta"), row("Gamma delta", " epsilon zeta")),
             (row("Count: one two", " three"), row("Count: one", " two three"))]
    seqs = [p[0] for p in pairs] + [p[1] for p in pairs]
    width = max(len(ids) for ids, _ in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for r, (tokens, labs) in enumerate(seqs):
        ids[r, :len(tokens)] = torch.tensor(tokens)
        labels[r, :len(labs)] = torch.tensor(labs)
    return ids, [len(t) for t, _ in seqs], labels


def _next_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    target = labels[:, 1:].clamp(min=0)
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return torch.gather(logps, 2, target.unsqueeze(-1)).squeeze(-1) * (labels[:, 1:] != -100)


def test_pair_trees_give_every_label_its_padded_log_prob(tiny_model, tiny_tokenizer) -> None:
    from cream_plugin.forward.prefix_tree import pack_pair_trees

    model = perturbed_copy(tiny_model, 0.3).eval()
    ids, lengths, labels = _pair_batch(tiny_tokenizer)
    mask = (torch.arange(ids.size(1)) < torch.tensor(lengths).unsqueeze(1)).long()
    packed = pack_pair_trees(ids, lengths, labels, pad_id=0)
    labelled = labels[:, 1:] != -100
    # every labelled prediction reads a packed column whose label is the same token
    assert (packed.source[labelled] >= 0).all()
    flat_labels = packed.labels[:, 1:].reshape(-1)
    assert torch.equal(flat_labels[packed.source[labelled]], labels[:, 1:][labelled])
    assert packed.input_ids.numel() < sum(lengths)  # the shared prompts ran once
    with torch.no_grad():
        want = _next_token_logps(model(input_ids=ids, attention_mask=mask).logits, labels)
        logits = model(input_ids=packed.input_ids, position_ids=packed.position_ids,
                       attention_mask=packed.attention_mask).logits
    got = packed.unpack(_next_token_logps(logits, packed.labels))
    torch.testing.assert_close(got[labelled], want[labelled], rtol=0, atol=1e-5)


def test_pair_trees_refuse_an_odd_batch() -> None:
    from cream_plugin.forward.prefix_tree import pack_pair_trees

    with pytest.raises(ValueError, match="chosen and rejected rows"):
        pack_pair_trees(torch.ones((3, 4), dtype=torch.long), [4, 4, 4],
                        torch.ones((3, 4), dtype=torch.long))
