"""Meta-Rewarding's two kinds of preference rows, in the pairs stage's row format.

Actor pairs (chosen / rejected *responses* to the user's prompt) come from the averaged judge
scores through the length control (:mod:`cream_plugin.ranking.length_control`); judge pairs
(chosen / rejected *judgements*, the prompt being the judge's rubric prompt for one response)
come from the meta-judge's battles (:mod:`cream_plugin.ranking.judge_battles`). Both go into one
DPO data set, as in the paper; the ``role`` column says which is which. Every row carries
C = 1 (plain DPO) and no reference log-probs (the trainer computes them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cream_plugin.plugins.interfaces import Prompt
from cream_plugin.ranking.judge_battles import Battles, select_judge_pair
from cream_plugin.ranking.length_control import select_actor_pair
from cream_plugin.ranking.pairs import as_completion

ROLE_COLUMN = "role"
JUDGE_ID_SUFFIX = "/judge"
"""A judge pair's prompt id: its prompt's id plus this suffix (ids stay unique in one file)."""


def actor_pair_rows(prompt_ids: Sequence[str], prompts: Sequence[Prompt],
                    responses: Sequence[Sequence[str]], scores: np.ndarray, rho: float,
                    stats: Counter[str]) -> list[dict[str, Any]]:
    """One actor pair per prompt with two different finite scores (length-controlled; lengths
    in characters)."""
    rows: list[dict[str, Any]] = []
    for i, (pid, prompt, row) in enumerate(zip(prompt_ids, prompts, responses, strict=True)):
        choice = select_actor_pair(scores[i], [len(r) for r in row], rho)
        if choice is None:
            stats["actor_skipped"] += 1
            continue
        c, r = choice.chosen, choice.rejected
        stats["actor_pairs"] += 1
        stats["actor_chosen_not_best"] += int(scores[i][c] < np.nanmax(scores[i]))
        stats["actor_chosen_chars"] += len(row[c])
        stats["actor_rejected_chars"] += len(row[r])
        rows.append({"prompt_id": str(pid), "prompt": prompt,
                     "chosen": as_completion(prompt, row[c]),
                     "rejected": as_completion(prompt, row[r]),
                     "chosen_reward": float(scores[i][c]), "rejected_reward": float(scores[i][r]),
                     "consistency": 1.0, ROLE_COLUMN: "actor"})
    return rows


def judge_prompt_as(prompt: Prompt, messages: list[dict[str, str]]) -> Prompt:
    """The judge prompt in the user prompt's format (a pairs file is all chat or all text)."""
    return messages if isinstance(prompt, list) else messages[-1]["content"]


def judge_pair_rows(prompt_ids: Sequence[str], prompts: Sequence[Prompt],
                    picked: Mapping[int, tuple[int, Battles]],
                    texts: Sequence[Sequence[Sequence[str]]],
                    judge_prompts: Sequence[Sequence[list[dict[str, str]]]],
                    weights: tuple[float, float], verdict: str,
                    stats: Counter[str]) -> list[dict[str, Any]]:
    """One judge pair per prompt whose picked response's judgements do not all tie.

    ``picked[i] = (k, battles)``: prompt i's response k was meta-judged with ``battles`` over
    its judgements ``texts[i][k]``; ``judge_prompts[i][k]`` is its rubric prompt.
    """
    rows: list[dict[str, Any]] = []
    for i, (pid, prompt) in enumerate(zip(prompt_ids, prompts, strict=True)):
        if i not in picked:
            stats["judge_skipped_no_response"] += 1
            continue
        k, battles = picked[i]
        options = texts[i][k]
        choice = select_judge_pair(battles, weights, verdict)
        if choice is None or options[choice.chosen] == options[choice.rejected]:
            stats["judge_skipped_tied"] += 1
            continue
        stats["judge_pairs"] += 1
        judge_prompt = judge_prompt_as(prompt, judge_prompts[i][k])
        rows.append({"prompt_id": f"{pid}{JUDGE_ID_SUFFIX}", "prompt": judge_prompt,
                     "chosen": as_completion(judge_prompt, options[choice.chosen]),
                     "rejected": as_completion(judge_prompt, options[choice.rejected]),
                     "chosen_reward": float(choice.strengths[choice.chosen]),
                     "rejected_reward": float(choice.strengths[choice.rejected]),
                     "consistency": 1.0, ROLE_COLUMN: "judge"})
    return rows
