"""Data set cards: JSON-lines artifacts listed as ``configs`` for ``datasets`` and the Hub."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cream_plugin.cards.model import (
    CARD_NAME,
    DATASET_STEPS,
    PAIRS_COLUMNS,
    SAMPLES_COLUMNS,
    TAGS,
    card_value,
    front_matter,
    human_size,
)
from cream_plugin.errors import DataError
from cream_plugin.loop.artifacts import MANIFEST_SUFFIX, atomic_write_text


# -- data set cards --------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetEntry:
    """One JSON-lines artifact in a data set card: a ``configs`` entry of the card."""

    path: str
    """Data file path relative to the card's folder (the repository root on the Hub)."""
    config_name: str
    kind: str = "rows"
    rows: int | None = None
    bytes: int | None = None
    digest: str | None = None
    method: str | None = None
    iteration: int | None = None
    columns: Sequence[str] = ()
    inputs: Mapping[str, str] = field(default_factory=dict)


def _first_row_columns(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8") as handle:
            line = handle.readline()
        row = json.loads(line) if line.strip() else {}
    except (OSError, ValueError):
        return []
    return list(row) if isinstance(row, dict) else []


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def dataset_entry(
    jsonl: str | os.PathLike[str], relative_to: str | os.PathLike[str]
) -> DatasetEntry:
    """Describe one JSON-lines file (with its stage manifest, when it has one)."""
    jsonl, root = Path(jsonl), Path(relative_to)
    if not jsonl.is_file():
        raise DataError(f"{jsonl}: no such JSON-lines file")
    rel = jsonl.resolve().relative_to(root.resolve()).as_posix()
    manifest = read_manifest(jsonl.with_name(jsonl.name[: -len(".jsonl")] + MANIFEST_SUFFIX))
    m = manifest or {}
    step = str(m.get("step") or "rows")
    kind = {"sample": "samples"}.get(step, step)
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", rel[: -len(".jsonl")]).strip("-") or "default"
    return DatasetEntry(
        path=rel,
        config_name=name,
        kind=kind,
        rows=m.get("rows"),
        bytes=jsonl.stat().st_size,
        digest=m.get("digest"),
        method=m.get("method") or None,
        iteration=m.get("iteration"),
        columns=_first_row_columns(jsonl),
        inputs=dict(m.get("inputs") or {}),
    )


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if rows < limit:
            return label
    return "100K<n<1M" if rows < 1_000_000 else "n>1M"


def dataset_card_text(
    entries: Sequence[DatasetEntry],
    *,
    title: str,
    license: str | None = None,
    source_datasets: Sequence[str] = (),
    base_model: str | None = None,
    extra_tags: Sequence[str] = (),
) -> str:
    """A data set card listing ``entries`` as ``configs`` (one split ``train`` each)."""
    if not entries:
        raise DataError(f"data set card {title!r}: no artifacts to describe")
    meta: dict[str, Any] = {}
    if license:
        meta["license"] = license
    meta["pretty_name"] = title
    kinds = {e.kind for e in entries}
    meta["task_categories"] = ["text-generation"]
    meta["tags"] = list(dict.fromkeys(
        [*TAGS, *(["preference"] if "pairs" in kinds else []), *extra_tags]
    ))
    total = sum(e.rows or 0 for e in entries)
    meta["size_categories"] = [_size_category(total)]
    if source_datasets:
        meta["source_datasets"] = list(dict.fromkeys(source_datasets))
    # An empty file (a method that found no pairs) is listed below but is no config: the
    # viewer and load_dataset cannot build a split from zero rows.
    loadable = [e for e in entries if e.rows != 0 and e.bytes != 0]
    if loadable:
        meta["configs"] = [
            {
                "config_name": e.config_name,
                "data_files": [{"split": "train", "path": e.path}],
                **({"default": True} if i == 0 else {}),
            }
            for i, e in enumerate(loadable)
        ]
    lines = [
        f"# {title}",
        "",
        "Artifacts of a [cream-plugin](https://github.com/cream-plugin/cream-plugin) run, one "
        "JSON-lines file per stage, each row one JSON object.",
    ]
    if base_model:
        lines += ["", f"Produced from the base model `{base_model}`."]
    lines += [
        "",
        "| config | file | kind | method | iteration | rows | size | digest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| {e.config_name} | `{e.path}` | {e.kind} | {card_value(e.method)} "
            f"| {card_value(e.iteration)} | {card_value(e.rows)} | {human_size(e.bytes)} "
            f"| `{e.digest or '?'}` |"
        )
    for kind, docs in (("pairs", PAIRS_COLUMNS), ("samples", SAMPLES_COLUMNS)):
        cols = list(dict.fromkeys(c for e in entries if e.kind == kind for c in e.columns))
        if cols:
            lines += ["", f"## Columns of the {kind} files", ""]
            lines += ["| column | meaning |", "|---|---|"]
            lines += [f"| `{c}` | {docs.get(c, '')} |" for c in cols]
    inputs = [(e.config_name, e.inputs) for e in entries if e.inputs]
    if inputs:
        lines += ["", "## Provenance", "", "Digests of the stages each artifact was computed "
                  "from (the run's manifests):", ""]
        lines += [f"- {name}: " + ", ".join(f"{k} `{v}`" for k, v in sorted(ins.items()))
                  for name, ins in inputs]
    first = (loadable or list(entries))[0]
    lines += [
        "",
        "## Load",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("json", data_files="{first.path}", split="train")',
        f'# or, from this folder or the Hub repository: load_dataset(PATH, "{first.config_name}")',
        "",
        "import pandas as pd",
        "",
        f'df = pd.read_json("{first.path}", lines=True)',
        "```",
    ]
    return front_matter(meta, "\n".join(lines))


def write_dataset_card(
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    steps: Sequence[str] = DATASET_STEPS,
    license: str | None = None,
    source_datasets: Sequence[str] = (),
    base_model: str | None = None,
) -> Path:
    """Write a data set card ``README.md`` into the folder of a JSON-lines artifact.

    ``path`` is a ``.jsonl`` file or a folder. The card lists that file and every other stage
    artifact in the folder whose manifest ``step`` is in ``steps`` (samples and pairs), so
    calling it again after another artifact lands there rewrites one card covering both.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    files: list[Path] = []
    if path.is_file():
        if path.suffix != ".jsonl":
            raise DataError(f"{path}: a data set card describes a .jsonl artifact")
        files.append(path)
    elif not path.is_dir():
        raise DataError(f"{path}: no such artifact or folder")
    for candidate in sorted(folder.glob("*.jsonl")):
        manifest = read_manifest(candidate.with_name(candidate.stem + MANIFEST_SUFFIX))
        if candidate not in files and manifest and manifest.get("step") in steps:
            files.append(candidate)
    if not files:
        raise DataError(f"{folder}: no {'/'.join(steps)} artifact to describe")
    entries = [dataset_entry(f, folder) for f in files]
    card = folder / CARD_NAME
    atomic_write_text(card, dataset_card_text(
        entries,
        title=title or folder.name,
        license=license,
        source_datasets=source_datasets,
        base_model=base_model,
    ))
    return card
