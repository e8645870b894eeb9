"""Preference pairs: the best vs the worst response of each prompt by one reward table.

Rows are in TRL's preference format. For a conversational prompt, ``prompt`` stays the message
list and ``chosen`` / ``rejected`` are ``[{"role": "assistant", "content": text}]``, which is
what DPOTrainer tokenises with the chat template (and what :mod:`cream_plugin.forward.logprobs`
mirrors); for a plain-text prompt they are plain strings.

The best is the highest finite reward, the worst the lowest (ties go to the earliest response);
a prompt is skipped when it has fewer than two finite rewards or when best and worst rewards are
equal. Consistency rates are joined by prompt id, never by position.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cream_plugin.errors import DataError
from cream_plugin.forward.logprobs import SequenceLogProbs
from cream_plugin.plugins.interfaces import PAIR_TEXT_COLUMNS, REF_COLUMNS, Prompt


def as_completion(prompt: Prompt, text: str) -> Any:
    """A response in the prompt's format: an assistant message list for a chat prompt, else
    the plain text."""
    if isinstance(prompt, list):
        return [{"role": "assistant", "content": text}]
    return text


def _consistency_mapping(
    prompt_ids: Sequence[str], consistency: Any
) -> Mapping[str, float] | None:
    if consistency is None:
        return None
    if isinstance(consistency, Mapping):
        return {str(k): float(v) for k, v in consistency.items()}
    if hasattr(consistency, "as_mapping"):  # a ConsistencyResult over the same prompt ids
        return dict(consistency.as_mapping(prompt_ids))
    values = np.asarray(consistency, dtype=np.float64)
    if values.shape != (len(prompt_ids),):
        raise DataError(
            f"consistency has shape {values.shape}; expected ({len(prompt_ids)},) or a mapping "
            "prompt_id -> C"
        )
    return {str(pid): float(c) for pid, c in zip(prompt_ids, values, strict=True)}


def build_pairs(
    prompt_ids: Sequence[str],
    prompts: Sequence[Prompt],
    responses: Sequence[Sequence[str]],
    rewards: Any,
    consistency: Any = None,
    *,
    ref_logps: SequenceLogProbs | None = None,
    stats: Counter[str] | None = None,
) -> list[dict[str, Any]]:
    """One preference row per prompt with a strict best and worst response.

    ``consistency`` is a mapping prompt_id -> C (the explicit join), a ``ConsistencyResult`` or a
    (P,) array over ``prompt_ids``; without it every pair gets C = 1.0 (plain DPO). A prompt id
    missing from the mapping is an error. ``ref_logps`` (log-probs of the model being trained on
    the same (P, N) table) adds ``ref_chosen_logps`` / ``ref_rejected_logps`` for TRL's
    precomputed-reference path. ``stats`` (a Counter) receives the number of pairs and skips.
    """
    table = np.asarray(rewards, dtype=np.float64)
    p = len(prompt_ids)
    if len(prompts) != p or len(responses) != p:
        raise DataError(f"{p} prompt ids, {len(prompts)} prompts, {len(responses)} response lists")
    if table.ndim != 2 or table.shape[0] != p:
        raise DataError(f"rewards have shape {table.shape}; expected ({p}, N)")
    n = table.shape[1]
    ids = [str(pid) for pid in prompt_ids]
    seen: set[str] = set()
    for pid in ids:
        if pid in seen:
            raise DataError(f"prompt id {pid!r} occurs more than once")
        seen.add(pid)
    for i, row in enumerate(responses):
        if len(row) != n:
            raise DataError(f"prompt {ids[i]!r}: {len(row)} responses but {n} rewards")
    if ref_logps is not None and ref_logps.sum.shape != table.shape:
        raise DataError(f"ref_logps have shape {ref_logps.sum.shape}; expected {table.shape}")
    rates = _consistency_mapping(ids, consistency)
    if rates is not None:
        missing = [pid for pid in ids if pid not in rates]
        if missing:
            raise DataError(f"no consistency value for prompt id(s) {missing[:5]}")

    finite = np.isfinite(table)
    enough = finite.sum(axis=1) >= 2
    if n == 0:
        best = worst = np.zeros(p, dtype=np.int64)
        hi = lo = np.full(p, np.nan)
    else:
        best = np.argmax(np.where(finite, table, -np.inf), axis=1)
        worst = np.argmin(np.where(finite, table, np.inf), axis=1)
        hi, lo = table[np.arange(p), best], table[np.arange(p), worst]
    with np.errstate(invalid="ignore"):
        usable = enough & (hi > lo)

    counter = stats if stats is not None else Counter()
    counter["prompts"] += p
    counter["skipped_too_few_rewards"] += int((~enough).sum())
    counter["skipped_all_equal"] += int((enough & ~usable).sum())
    pairs: list[dict[str, Any]] = []
    for i in np.flatnonzero(usable).tolist():
        b, w = int(best[i]), int(worst[i])
        prompt = prompts[i]
        pair: dict[str, Any] = {
            "prompt_id": ids[i],
            "prompt": prompt,
            "chosen": as_completion(prompt, responses[i][b]),
            "rejected": as_completion(prompt, responses[i][w]),
            "chosen_reward": float(hi[i]),
            "rejected_reward": float(lo[i]),
            "consistency": 1.0 if rates is None else rates[ids[i]],
        }
        if ref_logps is not None:
            ref_b, ref_w = float(ref_logps.sum[i, b]), float(ref_logps.sum[i, w])
            if not (math.isfinite(ref_b) and math.isfinite(ref_w)):
                raise DataError(
                    f"prompt {ids[i]!r}: the reference log-probs of the chosen/rejected response "
                    f"are {ref_b} / {ref_w}; DPO needs finite values")
            pair["ref_chosen_logps"] = ref_b
            pair["ref_rejected_logps"] = ref_w
        pairs.append(pair)
    counter["pairs"] += len(pairs)
    return pairs




def _kind(value: Any) -> str | None:
    """'text' for a string, 'chat' for a non-empty list of {role, content} strings, else None."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, list) and value and all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in value):
        return "chat"
    return None


def validate_pair_rows(rows: Sequence[Mapping[str, Any]], source: str) -> None:
    """Check preference rows before any tokenising; errors name ``source``, the row and field.

    Every row has ``prompt`` / ``chosen`` / ``rejected`` of one kind for the whole file (all
    plain strings, or all chat message lists); ``consistency``, when present, is a number in
    [0, 1]; reference log-probs, when any row has them, are in every row and finite.
    """
    if not rows:
        raise DataError(f"{source}: no pairs")
    first_kind: str | None = None
    first = rows[0] if isinstance(rows[0], Mapping) else {}
    has_ref = [c for c in REF_COLUMNS if c in first]
    for k, row in enumerate(rows, start=1):
        where = f"{source}: row {k}"
        if not isinstance(row, Mapping):
            raise DataError(f"{where}: expected a JSON object")
        if row.get("prompt_id") is not None:
            where += f" (prompt_id {str(row['prompt_id'])!r})"
        for column in PAIR_TEXT_COLUMNS:
            if column not in row:
                raise DataError(f"{where}: missing field {column!r}")
            kind = _kind(row[column])
            if kind is None:
                raise DataError(f"{where}: field {column!r} must be a string or a non-empty "
                                "list of {role, content} strings")
            if first_kind is None:
                first_kind = kind
            elif kind != first_kind:
                raise DataError(f"{where}: field {column!r} is {kind} but row 1's prompt is "
                                f"{first_kind}; a pairs file is all plain text or all chat")
        if "consistency" in row:
            c = row["consistency"]
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 <= c <= 1.0:
                raise DataError(f"{where}: 'consistency' must be a number in [0, 1], got {c!r}")
        for column in REF_COLUMNS:
            present = column in row
            if present != (column in has_ref):
                raise DataError(f"{where}: {column!r} is {'present' if present else 'missing'}"
                                " but " + ("absent from" if present else "present in")
                                + " row 1; give it in every row or in none")
            if present:
                value = row[column]
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not math.isfinite(value):
                    raise DataError(f"{where}: {column!r} must be a finite number, got {value!r}")
