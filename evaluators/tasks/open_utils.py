"""Open questions (the ``cream_open_*`` tasks): an ARC question asked without its options, the
answer scored against the text of the correct option.

A module of its own, beside ``utils.py``, so the multiple-choice tasks' code (and so the
identity of every evaluation stage that does not use these tasks) is unchanged by them; lm-eval
imports it by path (``!function open_utils.open_process``), so it only imports installed
packages.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any


def arc_view(doc: dict[str, Any]) -> tuple[str, list[str], int]:
    """(question, option texts, gold index) of an ARC row."""
    labels = list(doc["choices"]["label"])
    return doc["question"], list(doc["choices"]["text"]), labels.index(doc["answerKey"].strip())


# A question that points at options it no longer shows ("which of these", "shown below") or a
# gold answer that names other options ("all of the above") cannot be answered without them.
_REFERS_TO_OPTIONS = re.compile(
    r"\b(?:of|from|in) (?:the )?(?:following|these|those|choices|options)\b|\bbelow\b"
    r"|\blisted\b|\bshown\b",
    re.IGNORECASE,
)
_GOLD_NAMES_OPTIONS = re.compile(r"\b(?:all|none|both) of (?:the|these|those)\b|\babove\b",
                                 re.IGNORECASE)
OPEN_MAX_GOLD_WORDS = 4
"""Longer gold answers are sentences that a free answer almost never contains verbatim."""
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = re.compile(r"[^\w\s]")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation removed, articles (a, an, the) removed,
    runs of whitespace collapsed to one space."""
    text = _PUNCTUATION.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def open_gold(doc: dict[str, Any]) -> str:
    """The text of the correct option: the gold answer of the question asked without options."""
    _, choices, gold = arc_view(doc)
    return choices[gold]


def open_answerable(doc: dict[str, Any]) -> bool:
    """Whether the question makes sense without its options and has a short gold answer."""
    question, _, _ = arc_view(doc)
    gold = open_gold(doc)
    return (not _REFERS_TO_OPTIONS.search(question) and not _GOLD_NAMES_OPTIONS.search(gold)
            and 0 < len(normalize_answer(gold).split()) <= OPEN_MAX_GOLD_WORDS)


def open_docs(dataset: Any) -> Any:
    """``process_docs`` of the open tasks: the rows :func:`open_answerable` keeps."""
    return dataset.filter(open_answerable)


def open_text(doc: dict[str, Any]) -> str:
    """The user turn: the bare question, no options and no answer format."""
    return arc_view(doc)[0]


def contains_gold(answer: str, gold: str) -> float:
    """1.0 when the normalised gold answer occurs, as whole words, in the normalised answer."""
    wanted = normalize_answer(gold)
    return float(bool(wanted) and f" {wanted} " in f" {normalize_answer(answer)} ")


def token_f1(answer: str, gold: str) -> float:
    """SQuAD's token-level F1 between the normalised answer and gold (multiset overlap)."""
    predicted, wanted = normalize_answer(answer).split(), normalize_answer(gold).split()
    overlap = sum((Counter(predicted) & Counter(wanted)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(wanted)
    return 2 * precision * recall / (precision + recall)


def open_process(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Per item: gold contained, token F1, and the answer's length in characters (stripped)."""
    answer, gold = results[0], open_gold(doc)
    return {"contains_gold": contains_gold(answer, gold), "f1": token_f1(answer, gold),
            "answer_chars": float(len(answer.strip()))}
