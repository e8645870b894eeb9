"""The unlabeled prompt pool that each self-rewarding iteration samples responses for.

Prompts come from the seed SFT set (its user turns) and the train splits of the benchmarks,
rendered as natural chat questions. Sources are shuffled by seed and interleaved round-robin
so every iteration gets a similar mix, then cut into disjoint per-iteration slices. Each
benchmark prompt keeps its gold answer as ``reference`` for the answer-key (oracle) rewarder.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cream_plugin.data import load_rows
from cream_plugin.errors import DataError

PromptItem = dict[str, Any]
"""``{prompt_id, prompt: [{"role": "user", "content"}], source, reference}``."""

MC_INSTRUCTION = "Answer with the letter of the correct option."
GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$")


def render_multiple_choice(question: str, labels: Sequence[str], texts: Sequence[str]) -> str:
    """A multiple-choice question as chat text: question, lettered options, an instruction."""
    options = "\n".join(f"{label}. {text}" for label, text in zip(labels, texts, strict=True))
    return f"{question.strip()}\n\n{options}\n\n{MC_INSTRUCTION}"


def gsm8k_reference(answer: str) -> str:
    """The final number of a GSM8K solution (after ``####``), without thousands separators."""
    match = GSM8K_ANSWER.search(answer.strip())
    if not match:
        raise ValueError("no '#### <number>' line in the answer")
    return match.group(1).replace(",", "").strip()


def _item(source: str, row_id: Any, content: str, reference: str | None) -> PromptItem:
    return {
        "prompt_id": f"{source}/{row_id}",
        "prompt": [{"role": "user", "content": content}],
        "source": source,
        "reference": reference,
    }


def _seed_sft(row: dict[str, Any], index: int) -> PromptItem:
    user = next((m["content"] for m in row["messages"] if m["role"] == "user"), None)
    if not user:
        raise ValueError("no user turn in 'messages'")
    return _item("seed_sft", row.get("id", index), user, None)


def _arc(source: str) -> Callable[[dict[str, Any], int], PromptItem]:
    def convert(row: dict[str, Any], index: int) -> PromptItem:
        question = str(row["question"] if "question" in row else row["question_stem"])
        content = render_multiple_choice(question, row["choices"]["label"], row["choices"]["text"])
        return _item(source, row.get("id", index), content, str(row["answerKey"]))

    return convert


def _gsm8k(row: dict[str, Any], index: int) -> PromptItem:
    return _item("gsm8k", index, row["question"].strip(), gsm8k_reference(row["answer"]))


CONVERTERS: dict[str, Callable[[dict[str, Any], int], PromptItem]] = {
    "seed_sft": _seed_sft,
    "arc_easy": _arc("arc_easy"),
    "arc_challenge": _arc("arc_challenge"),
    "openbookqa": _arc("openbookqa"),
    "gsm8k": _gsm8k,
}


def load_source(source: str, data_dir: str | Path | None = None) -> list[PromptItem]:
    """All prompts of one source (train split), in file order; bad rows name source and row."""
    if source not in CONVERTERS:
        raise DataError(f"unknown prompt source {source!r}; known sources: {', '.join(CONVERTERS)}")
    items = []
    for index, row in enumerate(load_rows(source, "train", data_dir)):
        try:
            items.append(CONVERTERS[source](row, index))
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(
                f"{source}/train row {index + 1}: cannot make a prompt: {exc}"
            ) from None
    return items


def build_prompt_pool(
    sources: Sequence[str],
    data_dir: str | Path | None,
    per_iteration: int,
    iterations: int,
    seed: int,
) -> list[list[PromptItem]]:
    """``iterations`` disjoint lists of ``per_iteration`` prompts, mixed across sources by seed.
    The first k lists do not depend on ``iterations`` (>= k): ``consistency.after_last`` draws
    iteration T+1's prompts as the last list of a pool of T+1."""
    if per_iteration < 1 or iterations < 1:
        raise DataError("per_iteration and iterations must both be >= 1")
    if not sources:
        raise DataError("data.prompt_sources is empty: name at least one prompt source")
    rng = random.Random(seed)
    shuffled: list[list[PromptItem]] = []
    for source in dict.fromkeys(sources):  # keep order, drop repeats
        items = load_source(source, data_dir)
        rng.shuffle(items)
        shuffled.append(items)
    mixed: list[PromptItem] = []
    seen: set[str] = set()
    for depth in range(max(len(items) for items in shuffled)):
        for items in shuffled:
            if depth < len(items) and items[depth]["prompt_id"] not in seen:
                seen.add(items[depth]["prompt_id"])
                mixed.append(items[depth])
    wanted = per_iteration * iterations
    if len(mixed) < wanted:
        raise DataError(
            f"the prompt pool from {', '.join(sources)} has {len(mixed)} distinct prompts, fewer "
            f"than the {wanted} asked for ({iterations} iterations x {per_iteration}); lower "
            "data.prompts_per_iteration or add sources"
        )
    pool = []
    for t in range(iterations):
        chunk = mixed[t * per_iteration : (t + 1) * per_iteration]
        rng.shuffle(chunk)
        pool.append(chunk)
    return pool
