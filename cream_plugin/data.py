"""Benchmark and seed data: a local folder (../shared/data layout) or the Hugging Face Hub.

The local folder comes from the config (``data.data_dir``) or ``CREAM_DATA_DIR``; without
either, benchmarks load from the Hub data sets that lm-eval's stock tasks use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.loop.jsonl import read_jsonl

ENV_DATA_DIR = "CREAM_DATA_DIR"

# name -> (hub path, hub config name); the local copy mirrors the Hub schema.
HUB_SOURCES: dict[str, tuple[str, str | None]] = {
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge"),
    "openbookqa": ("allenai/openbookqa", "main"),
    "social_iqa": ("allenai/social_i_qa", None),
    "gsm8k": ("openai/gsm8k", "main"),
}


def _require(*names: str) -> Callable[[dict[str, Any]], str | None]:
    def check(row: dict[str, Any]) -> str | None:
        missing = [n for n in names if n not in row]
        return f"missing field(s) {', '.join(missing)}" if missing else None

    return check


def _check_choices(row: dict[str, Any]) -> str | None:
    choices = row.get("choices")
    if not isinstance(choices, dict) or not isinstance(choices.get("text"), list):
        return "field 'choices' must be {text: [...], label: [...]}"
    labels = choices.get("label")
    if not isinstance(labels, list) or len(labels) != len(choices["text"]):
        return "field 'choices.label' must be a list as long as 'choices.text'"
    if row.get("answerKey") not in labels:
        return f"answerKey {row.get('answerKey')!r} is not one of the labels {labels}"
    return None


def _check_mc(*names: str) -> Callable[[dict[str, Any]], str | None]:
    base = _require(*names)
    return lambda row: base(row) or _check_choices(row)


def _check_messages(row: dict[str, Any]) -> str | None:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "field 'messages' must be a non-empty list of {role, content}"
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not {"role", "content"} <= set(msg):
            return f"messages[{i}] must have 'role' and 'content'"
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer"
    return None


SCHEMAS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "arc_easy": _check_mc("question", "choices", "answerKey"),
    "arc_challenge": _check_mc("question", "choices", "answerKey"),
    "openbookqa": _check_mc("question_stem", "choices", "answerKey"),
    "social_iqa": _require("context", "question", "answerA", "answerB", "answerC", "label"),
    "gsm8k": _require("question", "answer"),
    "seed_sft": _check_messages,
}


def resolve_data_dir(configured: str | os.PathLike[str] | None = None) -> Path | None:
    """The local data folder: the configured one, else ``$CREAM_DATA_DIR``, else None (Hub)."""
    raw = configured or os.environ.get(ENV_DATA_DIR)
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.is_dir():
        source = "data.data_dir" if configured else ENV_DATA_DIR
        raise DataError(f"{source} points to {path}, which is not a folder")
    return path


def ensure_writable(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Create the folder of an output file and check a file can be created there, up front.

    Commands call this before loading a model, so a read-only or missing output location fails
    in a second with a message naming the path, not after the work.
    """
    target = Path(path)
    if target.is_dir():
        raise DataError(f"{what} {target} is a folder; give a file name")
    _probe(target.parent, f"{what} {target}")
    return target


def _probe(folder: Path, label: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".cream-write-probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DataError(f"{label}: cannot write into {folder} ({exc.strerror or exc})") from None


def ensure_writable_folder(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``path`` as a folder (if needed) and check files can be written into it."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{what} {folder} exists and is not a folder")
    _probe(folder, f"{what} {folder}")
    return folder


def local_path(name: str, split: str, data_dir: Path) -> Path:
    return data_dir / name / f"{split}.jsonl"


def load_rows(
    name: str, split: str, data_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """Rows of one benchmark split (or the seed set), from the local folder or the Hub."""
    check = SCHEMAS.get(name)
    folder = resolve_data_dir(data_dir)
    if folder is not None:
        return read_jsonl(local_path(name, split, folder), check)
    if name not in HUB_SOURCES:
        raise DataError(
            f"{name!r} has no Hub source: set {ENV_DATA_DIR} or data.data_dir to a folder "
            f"holding {name}/{split}.jsonl"
        )
    hub_path, hub_name = HUB_SOURCES[name]
    dataset = load_hub_dataset(hub_path, hub_name, split=split)
    return [dict(row) for row in dataset]


def load_hub_dataset(hub_path: str, hub_name: str | None, split: str | None = None) -> Any:
    """``datasets.load_dataset`` from the Hub; offline or unreachable, a :class:`DataError`
    naming the fix (``CREAM_DATA_DIR``) instead of datasets' bare ``ConnectionError``.

    Used by the pipeline and by the lm-eval tasks (``evaluators/tasks/utils.py``), so ``cream
    run``, ``cream eval`` and a plain ``lm_eval`` say the same thing."""
    import datasets

    try:
        return datasets.load_dataset(hub_path, hub_name, split=split)
    except ConnectionError as exc:  # OfflineModeIsEnabled, LocalEntryNotFoundError, no network
        raise DataError(
            f"{hub_path}{'/' + hub_name if hub_name else ''}: not reachable on the Hub "
            f"({' '.join(str(exc).split())}); set {ENV_DATA_DIR} to the local data folder "
            f"(the ../shared/data layout), or go online (unset HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)"
        ) from None
