"""SCIR's judge inputs: the two presentation orders of each pair, collated beside the DPO batch.

A step of :class:`cream_plugin.trainers.scir_trainer.SCIRTrainer` asks the policy, prompted as a
pairwise judge, which response of each pair is better, in both orders. :class:`PairJudgeCollator`
tokenises those prompts when the batch is built, and :func:`judge_preference_from_batch` turns them
into P_gen inside the step (padded, packed, or as prefix trees that run a pair's shared start once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from cream_plugin.errors import ConfigError, DataError
from cream_plugin.plugins.interfaces import CONSISTENCY_COLUMN, PAIR_TEXT_COLUMNS
from cream_plugin.rewarders.pairwise_judge import (
    encode_pair_prompt,
    first_verdict_probs,
    order_averaged,
    paired_verdict_probs,
)

JUDGE_IDS = "scir_judge_input_ids"
JUDGE_MASK = "scir_judge_attention_mask"


def response_text(value: Any, eos: str | None = None) -> str:
    """A response column as plain text: the assistant messages' content, or the string itself
    (without the eos token TRL appends to plain-text completions)."""
    if isinstance(value, str):
        if eos and value.endswith(eos):
            value = value[: -len(eos)]
        return value
    if isinstance(value, Sequence) and all(isinstance(m, Mapping) for m in value):
        return "\n".join(str(m.get("content", "")) for m in value)
    raise DataError(f"a response must be a string or a list of messages, got {value!r:.80}")


class PairJudgeCollator:
    """Wraps TRL's preference collator so the batch also carries the judge prompts of each pair.

    For n pairs it adds ``scir_judge_input_ids`` / ``scir_judge_attention_mask`` (2n, width),
    right-padded: rows 0..n-1 show (chosen as A, rejected as B), rows n..2n-1 the swapped order.
    The ``prompt`` / ``chosen`` / ``rejected`` text and any ``consistency`` value are removed
    before the wrapped collator runs.
    """

    def __init__(self, inner: Callable[[list[dict[str, Any]]], dict[str, Any]], tokenizer: Any,
                 **judge_options: Any) -> None:
        self.inner = inner
        self.tokenizer = tokenizer
        self.judge_options = judge_options
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
            tokenizer.eos_token_id
        if pad is None:
            raise ConfigError("the tokenizer has neither a pad nor an eos token")
        self.pad_id = int(pad)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        forward, backward, stripped = [], [], []
        eos = getattr(self.tokenizer, "eos_token", None)
        for i, example in enumerate(examples):
            missing = [c for c in PAIR_TEXT_COLUMNS if c not in example]
            if missing:
                raise DataError(f"batch example {i}: SCIR needs the text columns "
                                f"{', '.join(missing)} for its judge prompt")
            chosen = response_text(example["chosen"], eos)
            rejected = response_text(example["rejected"], eos)
            forward.append(encode_pair_prompt(self.tokenizer, example["prompt"], chosen, rejected,
                                              **self.judge_options))
            backward.append(encode_pair_prompt(self.tokenizer, example["prompt"], rejected,
                                               chosen, **self.judge_options))
            stripped.append({k: v for k, v in example.items()
                             if k not in (*PAIR_TEXT_COLUMNS, CONSISTENCY_COLUMN)})
        batch = self.inner(stripped)
        sequences = forward + backward
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        batch[JUDGE_IDS], batch[JUDGE_MASK] = ids, mask
        return batch

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def judge_preference_from_batch(model: Any, judge_ids: torch.Tensor, judge_mask: torch.Tensor,
                                verdict_ids: tuple[int, int], pad_id: int,
                                batch_size: int | None = None, packed: bool = False,
                                tree: bool = False) -> torch.Tensor:
    """P_gen(chosen > rejected) for the n pairs of a collated batch (2n judge rows); ``packed``
    runs the judge rows padding-free (see ``first_verdict_probs``), ``tree`` runs the start that
    a pair's two prompts share once (``paired_verdict_probs``; the model must take a tree mask)."""
    lengths = judge_mask.sum(dim=1).tolist()
    sequences = [judge_ids[row, : int(n)].tolist() for row, n in enumerate(lengths)]
    n = len(sequences) // 2
    if tree:
        first, second = paired_verdict_probs(model, sequences[:n], sequences[n:], verdict_ids,
                                             pad_id, batch_size or len(sequences))
        return order_averaged(first, second)
    probs = first_verdict_probs(model, sequences, verdict_ids, pad_id,
                                batch_size or len(sequences), packed=packed)
    return order_averaged(probs[:n], probs[n:])
