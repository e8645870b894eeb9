"""Summed log-probabilities of responses, tokenised exactly as TRL's DPOTrainer trains on them.

The pipeline uses these sums both as the DPO implicit reward and as the precomputed
``ref_chosen_logps`` / ``ref_rejected_logps`` columns of the preference data, so the tokens that
count are the completion tokens of TRL 1.16's ``DPOTrainer._prepare_dataset``:

* conversational prompt (a message list):
  ``apply_chat_template(prompt, add_generation_prompt=True)`` is the prompt;
  ``apply_chat_template(prompt + [{"role": "assistant", "content": response}])`` is the full
  sequence; the completion starts where the two token lists stop agreeing;
* plain-text prompt: ``tokenizer(prompt)`` and ``tokenizer(prompt + response + eos)`` (TRL appends
  the eos token to a plain-text completion that does not already end with it).

For models with a plain LM head that take a 4-D mask, each prompt runs once, its responses as
branches of a prefix tree (:mod:`cream_plugin.forward.prompt_trees`). Otherwise sequences are
length-sorted and batched with right padding (a batch is cut where its padding would pass 15% of
its tokens). The backbone runs once per batch and
only the hidden states of completion positions go through the LM head, in chunks, so neither the
prompt nor the padding is projected and no (batch, length, vocab) logits tensor is built (TRL's
fused LM head, ``trl.trainer.utils.add_fused_lm_head``, does that only on Triton devices; on CPU
it projects every position; it is still used for models whose head scales or soft-caps logits).
``FORWARD_STATS`` counts the tokens each call spends, so a benchmark can check nothing is scored
twice. Identical (prompt, response) pairs are
scored once per call, and a :class:`LogProbCache` carries results across calls and stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cream_plugin.errors import DataError
from cream_plugin.forward.lm_head import FORWARD_STATS, ensure_fused_lm_head, head_logps, plain_head
from cream_plugin.forward.logprob_cache import CacheKey, LogProbCache, prompt_key
from cream_plugin.plugins.interfaces import Prompt

__all__ = ["FORWARD_STATS", "CacheKey", "LogProbCache", "SequenceLogProbs", "prompt_key",
           "response_logps", "scored_sequence", "tokenize_example", "tokenize_prompt"]


# Process-wide counters: "sequences" scored, "tokens" run through the backbone (padding excluded),
# "padding" positions computed on top of them, "scored" completion tokens projected by the LM head.
# Completion positions projected through the LM head at once (bounds the logits tensor).


@dataclass
class SequenceLogProbs:
    """Per-response log-likelihoods of one model: ``sum`` (P, N) float64, ``num_tokens`` (P, N)."""

    sum: np.ndarray
    num_tokens: np.ndarray

    def __post_init__(self) -> None:
        self.sum = np.asarray(self.sum, dtype=np.float64)
        self.num_tokens = np.asarray(self.num_tokens, dtype=np.int64)
        if self.sum.shape != self.num_tokens.shape or self.sum.ndim != 2:
            raise ValueError(
                f"sum {self.sum.shape} and num_tokens {self.num_tokens.shape} must be equal (P, N)"
            )

    @property
    def mean(self) -> np.ndarray:
        """Mean per-token log-likelihood; NaN where a response has no scored token."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.num_tokens > 0, self.sum / np.maximum(self.num_tokens, 1), np.nan)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _ids(encoded: Any) -> list[int]:
    ids = encoded["input_ids"] if not isinstance(encoded, list) else encoded
    return [int(i) for i in ids]


def tokenize_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Prompt token ids as TRL builds them (generation prompt added for chats)."""
    if isinstance(prompt, list):
        return _ids(tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=True, return_dict=True))
    return _ids(tokenizer(text=prompt))


def tokenize_example(
    tokenizer: Any, prompt: Prompt, response: str, prompt_ids: list[int] | None = None
) -> tuple[list[int], int]:
    """``(prompt + completion ids, completion start)``, mirroring TRL 1.16 DPOTrainer.

    TRL takes the completion start as the common prefix of the prompt ids and the full ids over
    *both* chosen and rejected; here it is taken per response. The two agree whenever the
    tokenised prompt is a prefix of the tokenised conversation (every ChatML-style template).
    """
    if prompt_ids is None:
        prompt_ids = tokenize_prompt(tokenizer, prompt)
    if isinstance(prompt, list):
        messages = [*prompt, {"role": "assistant", "content": response}]
        full = _ids(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True))
    else:
        eos = tokenizer.eos_token or ""
        completion = response if response.endswith(eos) else response + eos
        full = _ids(tokenizer(text=prompt + completion))
    return full, _common_prefix(prompt_ids, full)


def scored_sequence(tokenizer: Any, prompt: Prompt, response: str, prompt_ids: list[int],
                    max_length: int | None) -> tuple[list[int], int]:
    """``(ids, first scored position)`` as the log-prob stage scores a response: cut at
    ``max_length`` (TRL's ``keep_start``), the completion starting at position 1 at least (the
    first token has no prediction); ``len(ids) - start`` is its number of scored tokens."""
    ids, start = tokenize_example(tokenizer, prompt, response, prompt_ids)
    if max_length is not None:
        ids = ids[:max_length]
    return ids, min(max(start, 1), len(ids))


def check_table(prompts: Sequence[Prompt], responses: Sequence[Sequence[str]]) -> int:
    if len(prompts) != len(responses):
        raise DataError(f"{len(prompts)} prompts but {len(responses)} response lists")
    if not responses:
        return 0
    n = len(responses[0])
    for i, row in enumerate(responses):
        if isinstance(row, str) or len(row) != n:
            raise DataError(
                f"prompt {i}: expected a list of {n} responses (every prompt needs the same N), "
                f"got {row!r:.80}"
            )
        for j, text in enumerate(row):
            if not isinstance(text, str):
                raise DataError(f"prompt {i}, response {j}: expected a string, got {text!r:.80}")
    return n


def _completion_logp_sums(model: Any, input_ids: Any, attention: Any, labels: Any) -> Any:
    """Per-row summed log-probs of the labelled (non ``-100``) next tokens, float32 (rows,)."""
    import torch

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not plain_head(target):
        ensure_fused_lm_head(model)
        out = model(input_ids=input_ids, attention_mask=attention, labels=labels,
                    fused_lm_head=True, use_cache=False)
        return out.log_probs.float().sum(dim=1)
    hidden = target.base_model(input_ids=input_ids, attention_mask=attention,
                               use_cache=False).last_hidden_state[:, :-1]
    shifted = labels[:, 1:]
    mask = shifted != -100
    per_token = head_logps(target, hidden[mask], shifted[mask])
    rows = mask.nonzero()[:, 0]
    return torch.zeros(mask.shape[0], dtype=torch.float32, device=hidden.device).index_add_(
        0, rows, per_token)


def _score_batches(
    model: Any,
    pad_id: int,
    sequences: list[tuple[list[int], int]],
    batch_size: int,
    progress: bool,
    shard: tuple[int, int] = (0, 1),
) -> list[tuple[float, int]]:
    """Summed completion log-probs of each ``(ids, start)``, longest first, right-padded batches
    of similar lengths (``decoding.length_groups``).

    With ``shard=(rank, world)`` only batches ``rank, rank + world, ...`` of that plan are scored
    (the rest stay ``(0.0, 0)``): every batch is the one a single process would run, so the
    sums are bit-identical to a single-process call whatever the number of processes.
    """
    import torch
    from tqdm.auto import tqdm

    from cream_plugin.forward.decoding import length_groups
    from cream_plugin.forward.placement import root_gathered
    from cream_plugin.forward.prefix_tree import takes_tree_mask
    from cream_plugin.forward.prompt_trees import plan_prompt_trees, score_prompt_tree

    results: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
    order = [i for i in order if len(sequences[i][0]) > sequences[i][1]]  # has a completion token
    if not order:
        return results
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    batches: list[Any]
    if plain_head(target) and takes_tree_mask(target):  # each prompt once, responses as branches
        batches = plan_prompt_trees(sequences, order, batch_size)

        def score(batch: Any) -> dict[int, tuple[float, int]]:
            return score_prompt_tree(target, pad_id, sequences, batch)
    else:  # up to batch_size rows, cut where padding would pass 15% of the real tokens
        plan = length_groups([len(sequences[i][0]) for i in order], solo_length=None,
                             max_rows=batch_size)
        batches = [[order[k] for k in group] for group in plan]

        def score(batch: Any) -> dict[int, tuple[float, int]]:
            return _score_padded(model, pad_id, sequences, batch, device)
    rank, world = shard
    try:
        with torch.no_grad(), root_gathered(model):
            for batch in tqdm(batches[rank::world], desc="log-probs", unit="batch",
                              disable=not progress):
                for idx, value in score(batch).items():
                    results[idx] = value
    finally:
        model.train(was_training)
    return results


def _score_padded(model: Any, pad_id: int, sequences: list[tuple[list[int], int]],
                  batch: list[int], device: Any) -> dict[int, tuple[float, int]]:
    """(summed completion log-prob, completion tokens) of a batch of sequences as right-padded
    rows, longest first."""
    import torch

    width = len(sequences[batch[0]][0])
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, idx in enumerate(batch):
        ids, start = sequences[idx]
        tensor = torch.tensor(ids, dtype=torch.long)
        input_ids[row, : len(ids)] = tensor
        attention[row, : len(ids)] = 1
        labels[row, start : len(ids)] = tensor[start:]
    sums = _completion_logp_sums(
        model, input_ids.to(device), attention.to(device), labels.to(device)
    ).cpu().tolist()
    FORWARD_STATS["sequences"] += len(batch)
    FORWARD_STATS["tokens"] += int(attention.sum())
    FORWARD_STATS["padding"] += int(attention.numel() - attention.sum())
    FORWARD_STATS["scored"] += int((labels != -100).sum())
    return {idx: (float(sums[row]), len(sequences[idx][0]) - sequences[idx][1])
            for row, idx in enumerate(batch)}

def response_logps(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    responses: Sequence[Sequence[str]],
    *,
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool = True,
    cache: LogProbCache | None = None,
    model_key: str = "policy",
    shard: tuple[int, int] = (0, 1),
) -> SequenceLogProbs:
    """Summed log pi(response | prompt) over the response tokens DPO trains on, for P x N pairs.

    ``max_length`` truncates prompt + completion from the end (TRL's ``keep_start``), as DPOConfig's
    ``max_length`` does; a response with no token left gets sum 0 and ``num_tokens`` 0.
    With a ``cache``, pairs already scored under ``model_key`` are reused, new ones are added.
    ``shard=(rank, world)`` scores only this rank's batches of the single-process batch plan and
    leaves the other entries 0 (sum and ``num_tokens``): summing the ranks' tables gives exactly
    the single-process table. It cannot be combined with a cache.
    """
    if shard != (0, 1) and cache is not None:
        raise ValueError("a sharded call cannot use a cache (unscored entries would be cached)")
    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = check_table(prompts, responses)
    p = len(prompts)
    total = np.zeros((p, n), dtype=np.float64)
    counts = np.zeros((p, n), dtype=np.int64)
    if p == 0 or n == 0:
        return SequenceLogProbs(total, counts)
    key_model = model_key if max_length is None else f"{model_key}@max{max_length}"
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token")

    slots: dict[CacheKey, list[tuple[int, int]]] = {}
    todo: list[CacheKey] = []
    todo_seqs: list[tuple[list[int], int]] = []
    prompt_cache: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        pkey = prompt_key(prompt)
        for j, response in enumerate(responses[i]):
            key = (key_model, pkey, response)
            if key in slots:  # the same pair twice in this call: scored once
                slots[key].append((i, j))
                if cache is not None:
                    cache.hits += 1
                continue
            slots[key] = [(i, j)]
            if cache is not None:
                if key in cache:
                    cache.hits += 1
                    continue
                cache.misses += 1
            if pkey not in prompt_cache:
                prompt_cache[pkey] = tokenize_prompt(tokenizer, prompt)
            todo.append(key)
            todo_seqs.append(scored_sequence(tokenizer, prompt, response, prompt_cache[pkey],
                                             max_length))

    scored = _score_batches(model, pad_id, todo_seqs, batch_size, progress, shard)
    fresh = dict(zip(todo, scored, strict=True))
    if cache is not None:
        for key, value in fresh.items():
            cache.put(key, value)
    for key, places in slots.items():
        found = fresh.get(key) or (cache.get(key) if cache is not None else None)
        if found is None:  # pragma: no cover - every key is either fresh or cached
            raise RuntimeError(f"no log-prob for {key}")
        for i, j in places:
            total[i, j], counts[i, j] = found
    return SequenceLogProbs(total, counts)
