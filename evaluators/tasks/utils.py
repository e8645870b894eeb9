"""Data loading and answer extraction shared by the cream lm-eval tasks.

lm-eval imports this file by path (``!function utils.load``), so it only imports installed
packages. ``load`` reads the local data folder when one is named (task metadata ``data_dir``,
else ``$CREAM_DATA_DIR``) and the Hub data set of the matching stock task otherwise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

ENV_DATA_DIR = "CREAM_DATA_DIR"
SPLITS = ("train", "validation", "test")
LETTERS = "ABCDEFGHIJ"


def _local_dataset(folder: Path, name: str) -> Any:
    """A DatasetDict of ``folder/name/<split>.jsonl``; absent splits are empty (same columns)."""
    import datasets

    from cream_plugin.data import SCHEMAS, read_jsonl
    from cream_plugin.errors import DataError

    subdir = folder / name
    found = {split: subdir / f"{split}.jsonl" for split in SPLITS}
    found = {split: path for split, path in found.items() if path.is_file()}
    if not found:
        raise DataError(
            f"{subdir}: no {'/'.join(SPLITS)}.jsonl files; the local data folder needs "
            f"the ../shared/data layout"
        )
    parts = {
        split: datasets.Dataset.from_list(read_jsonl(path, SCHEMAS.get(name)))
        for split, path in found.items()
    }
    features = next(iter(parts.values())).features
    for split in SPLITS:
        if split not in parts:
            parts[split] = datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    return datasets.DatasetDict(parts)


def load(
    *,
    cream_name: str,
    hub_path: str,
    hub_name: str | None = None,
    data_dir: str | None = None,
    **_metadata: Any,
) -> Any:
    """``custom_dataset`` of every cream task: local folder if named, else the stock Hub data.

    ``data_dir`` comes from TaskManager / ``--metadata``; other metadata keys are ignored.
    """
    raw = data_dir or os.environ.get(ENV_DATA_DIR)
    if raw:
        folder = Path(raw).expanduser().resolve()
        if not folder.is_dir():
            from cream_plugin.errors import DataError

            source = "metadata data_dir" if data_dir else ENV_DATA_DIR
            raise DataError(f"{source} points to {folder}, which is not a folder")
        return _local_dataset(folder, cream_name)
    from cream_plugin.data import load_hub_dataset

    return load_hub_dataset(hub_path, hub_name)


# --------------------------------------------------------------------------- CoT prompts

MC_INSTRUCTION = (
    "Answer the multiple-choice question above. Think step by step, then finish with a "
    'line of the form "Answer: X", where X is the letter of the correct option.'
)
MATH_INSTRUCTION = (
    "Solve the problem above. Think step by step, then finish with a line of the form "
    '"Answer: N", where N is the final number.'
)


def mc_view(doc: dict[str, Any]) -> tuple[str, list[str], int]:
    """(question, choices, gold index) of an ARC, OpenBookQA or Social IQa row."""
    if "answerA" in doc:  # Social IQa: joined as in the stock prompt
        question = f"{doc['context']} {doc['question']}"
        return question, [doc["answerA"], doc["answerB"], doc["answerC"]], int(doc["label"]) - 1
    question = doc["question_stem"] if "question_stem" in doc else doc["question"]
    labels = list(doc["choices"]["label"])
    return question, list(doc["choices"]["text"]), labels.index(doc["answerKey"].strip())


def cot_mc_text(doc: dict[str, Any]) -> str:
    """The user turn: question, options lettered by position, and the answer format."""
    question, choices, _ = mc_view(doc)
    options = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(choices))
    return f"{question}\n\n{options}\n\n{MC_INSTRUCTION}"


def cot_mc_target(doc: dict[str, Any]) -> str:
    return LETTERS[mc_view(doc)[2]]


_MARKER = re.compile(r"answer(?:\s+is)?\s*[:：]?\s*(?:option\s+)?", re.IGNORECASE)
_OPTION = re.compile(r"(\*\*)?([(\[]?)([A-Za-z])([)\]]?)")


def _option_at(text: str, start: int, n_options: int) -> str | None:
    """The option letter right at ``start``, or None where the letter is a word (article "a")."""
    match = _OPTION.match(text, start)
    if not match:
        return None
    letter, opened, closed = match.group(3), match.group(2), match.group(4)
    rest = text[match.end():]
    bracketed = bool(opened and closed)
    if not bracketed:
        if letter.islower():
            return None  # "answer: a plant", "the answer is a" are articles, not option A
        # "A plant" is an article; "A", "A.", "A)", "A:", "A - ..." or "A\n" are options.
        if rest[:1].isalnum() or re.match(r"[ \t]+[a-z]", rest):
            return None
    letter = letter.upper()
    return letter if letter in LETTERS[:n_options] else None


def extract_choice(text: str, n_options: int) -> str | None:
    """The letter after the last "Answer:"-style marker; else a last line that is just a letter."""
    found = None
    for marker in _MARKER.finditer(text):
        letter = _option_at(text, marker.end(), n_options)
        if letter:
            found = letter
    if found:
        return found
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines:
        last = re.fullmatch(r"\**\(?([A-J])\)?\.?\**", lines[-1])
        if last and last.group(1) in LETTERS[:n_options]:
            return last.group(1)
    return None


def cot_mc_process(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    _, choices, gold = mc_view(doc)
    predicted = extract_choice(results[0], len(choices))
    return {"exact_match": float(predicted == LETTERS[gold])}


_NUMBER = r"-?\$?\s?-?\d[\d,]*(?:\.\d+)?"
_ANSWER_NUMBER = re.compile(r"answer(?:\s+is)?\s*[:：]?\s*\**\s*(" + _NUMBER + ")", re.IGNORECASE)


def normalize_number(raw: str) -> str | None:
    """``"$1,234.50"`` -> ``"1234.5"``; None if it is not a number."""
    cleaned = raw.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return str(int(value)) if value == int(value) else repr(value)


def extract_number(text: str) -> str | None:
    """The number after the last "Answer:" marker; else the last number in the text."""
    marked = _ANSWER_NUMBER.findall(text)
    candidates = marked or re.findall(_NUMBER, text)
    return normalize_number(candidates[-1]) if candidates else None


def gsm8k_target(doc: dict[str, Any]) -> str:
    """The final number of a GSM8K answer (the text after ``####``)."""
    return doc["answer"].split("####")[-1].strip()


def cot_gsm8k_text(doc: dict[str, Any]) -> str:
    return f"{doc['question']}\n\n{MATH_INSTRUCTION}"


def cot_gsm8k_process(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    predicted = extract_number(results[0])
    gold = normalize_number(gsm8k_target(doc))
    return {"exact_match": float(predicted is not None and predicted == gold)}
