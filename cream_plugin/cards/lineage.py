"""Lineage from a run folder's manifests (linked by digest), and every card of a run."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cream_plugin.cards.dataset import (
    read_manifest,
    write_dataset_card,
)
from cream_plugin.cards.model import (
    CARD_NAME,
    DATASET_STEPS,
    KNOWN_LICENSES,
    TAGS,
    ArtifactRef,
    Lineage,
    card_value,
    front_matter,
    hub_model_id,
    read_card_metadata,
    write_model_card,
)
from cream_plugin.errors import DataError
from cream_plugin.loop.artifacts import MANIFEST_SUFFIX


# -- lineage from a run folder ---------------------------------------------------------------
def read_manifests(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every stage manifest of a run folder by stage name (hidden scratch folders skipped)."""
    run_dir = Path(run_dir)
    out = {}
    for path in sorted(run_dir.rglob(f"*{MANIFEST_SUFFIX}")):
        rel = path.relative_to(run_dir).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue
        manifest = read_manifest(path)
        if manifest is not None:
            out[rel[: -len(MANIFEST_SUFFIX)]] = manifest
    return out


def _run_config(run_dir: Path) -> dict[str, Any]:
    data = read_manifest(run_dir / "config.json")
    return data or {}


def source_hub_ids(prompt_sources: Iterable[str]) -> list[str]:
    """Hub data set ids of the configured prompt sources (the local seed set has none)."""
    from cream_plugin.data import HUB_SOURCES

    return list(dict.fromkeys(HUB_SOURCES[s][0] for s in prompt_sources if s in HUB_SOURCES))


def _benchmarks(run_dir: Path, method: str, model_index: int) -> dict[str, dict[str, Any]]:
    path = run_dir / "results.jsonl"
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("method") == method and row.get("iteration") == model_index:
            out.setdefault(str(row["task"]), {})[str(row["metric"])] = row.get("value")
    return out


def lineage_from_run(
    run_dir: str | os.PathLike[str],
    checkpoint: str,
    *,
    benchmarks: Mapping[str, Mapping[str, Any]] | None = None,
    instruments: Mapping[str, Any] | None = None,
) -> Lineage:
    """The lineage of checkpoint ``checkpoint`` (a stage name: ``M1``, ``cream/M3``).

    Parent and pairs are found by the digests in the checkpoint's manifest ``inputs``; the
    consistency summaries are those of the pairs' ``consistency`` input and of every
    consistency-step manifest of the same method and iteration (SCIR's ``scir_C``); benchmarks
    are the ``results.jsonl`` rows of this method and model index unless given.
    """
    run_dir = Path(run_dir)
    manifests = read_manifests(run_dir)
    ck = manifests.get(checkpoint)
    if ck is None or ck.get("kind") != "folder":
        known = sorted(n for n, m in manifests.items() if m.get("kind") == "folder")
        raise DataError(
            f"{run_dir}: no checkpoint {checkpoint!r}; "
            f"checkpoints here: {', '.join(known) or 'none'}"
        )
    config = _run_config(run_dir)
    by_digest = {str(m.get("digest")): name for name, m in manifests.items()}
    inputs = ck.get("inputs") or {}
    method = str(ck.get("method") or "sft")
    iteration = ck.get("iteration") if ck.get("step") == "train" else None

    parent = parent_digest = None
    base = inputs.get("base")
    if base:
        parent_digest = str(base)
        parent = "M0" if parent_digest.startswith("M0:") else by_digest.get(parent_digest)

    pairs = None
    consistency: dict[str, Any] = {}
    pairs_name = by_digest.get(str(inputs.get("pairs")))
    if pairs_name:
        pm = manifests[pairs_name]
        rows_path = run_dir / f"{pairs_name}.jsonl"
        pairs = ArtifactRef(
            path=f"{pairs_name}.jsonl",
            digest=str(pm["digest"]),
            rows=pm.get("rows"),
            bytes=rows_path.stat().st_size if rows_path.is_file() else None,
            sha256=pm.get("content_sha256"),
        )
        c_name = by_digest.get(str((pm.get("inputs") or {}).get("consistency")))
        if c_name:
            consistency.update(manifests[c_name].get("summary") or {})
    for m in manifests.values():
        if (m.get("step") == "consistency" and m.get("method") == method
                and m.get("iteration") == iteration and iteration is not None):
            for key, value in (m.get("summary") or {}).items():
                consistency.setdefault(key, value)

    training_cfg = dict(config.get("training") or {})
    for key in ("report_to", "run_name"):
        training_cfg.pop(key, None)
    if ck.get("step") == "train":
        settings = {k: v for k, v in training_cfg.items() if not k.startswith("sft_")}
        settings["consistency_mode"] = ck.get("mode")
        settings["pairs"] = ck.get("pairs")
    else:
        settings = {k: v for k, v in training_cfg.items() if k.startswith("sft_")}
        settings["max_length"] = training_cfg.get("max_length")
        settings["examples"] = ck.get("examples")
    if "seed" in config:
        settings["seed"] = config["seed"]
    settings = {k: v for k, v in settings.items() if v is not None}

    match = re.search(r"M(\d+)$", checkpoint)
    model_index = int(match.group(1)) if match else None
    if benchmarks is None and model_index is not None:
        benchmarks = _benchmarks(run_dir, method, model_index)
    model_cfg = config.get("model") or {}
    data_cfg = config.get("data") or {}
    run_name = (config.get("training") or {}).get("run_name") or run_dir.resolve().name
    return Lineage(
        method=method,
        checkpoint=checkpoint,
        iteration=iteration,
        digest=ck.get("digest"),
        base_model=model_cfg.get("name"),
        parent=parent,
        parent_digest=parent_digest,
        pairs=pairs,
        consistency=consistency or None,
        training=settings,
        benchmarks=benchmarks or None,
        instruments=instruments,
        datasets=source_hub_ids(data_cfg.get("prompt_sources") or []),
        run_name=run_name,
    )


def available_checkpoints(run_dir: str | os.PathLike[str]) -> list[str]:
    """Checkpoint stages of a run whose folder is still on disk (pruned ones left out)."""
    run_dir = Path(run_dir)
    return [
        name for name, m in read_manifests(run_dir).items()
        if m.get("kind") == "folder" and m.get("complete") and not m.get("pruned")
        and (run_dir / name).is_dir()
    ]


def dataset_folders(
    run_dir: str | os.PathLike[str], steps: Sequence[str] = DATASET_STEPS
) -> list[Path]:
    """Folders of a run that hold at least one complete artifact of the given steps."""
    run_dir = Path(run_dir)
    folders = {
        (run_dir / name).parent for name, m in read_manifests(run_dir).items()
        if m.get("kind") == "rows" and m.get("step") in steps
        and (run_dir / f"{name}.jsonl").is_file()
    }
    return sorted(folders)


def write_run_cards(run_dir: str | os.PathLike[str]) -> list[Path]:
    """(Re)write the model card of every checkpoint still on disk and a data set card in every
    folder holding samples or pairs; returns the cards written. Idempotent: call it after a
    checkpoint, after its evaluation, or once at the end of a run."""
    run_dir = Path(run_dir)
    config = _run_config(run_dir)
    written = [
        write_model_card(run_dir / name, lineage_from_run(run_dir, name))
        for name in available_checkpoints(run_dir)
    ]
    base = (config.get("model") or {}).get("name")
    sources = source_hub_ids((config.get("data") or {}).get("prompt_sources") or [])
    for folder in dataset_folders(run_dir):
        title = f"{run_dir.resolve().name} · {folder.relative_to(run_dir).as_posix()}"
        written.append(write_dataset_card(
            folder, title=title, source_datasets=sources, base_model=base
        ))
    return written


def run_card_text(
    run_dir: str | os.PathLike[str],
    checkpoints: Sequence[str],
    *,
    repo_id: str,
    dataset_repo_id: str | None = None,
    report: bool = False,
) -> str:
    """The model card at the root of a pushed run: one sub-folder per checkpoint, each with its
    own lineage card, and links to the report and the data set repository."""
    run_dir = Path(run_dir)
    config = _run_config(run_dir)
    lineages = [lineage_from_run(run_dir, name) for name in checkpoints]
    base_name = (config.get("model") or {}).get("name")
    base = hub_model_id(base_name)
    meta: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-generation"}
    if base:
        meta.update(base_model=base, base_model_relation="finetune")
    if KNOWN_LICENSES.get(base or ""):
        meta["license"] = KNOWN_LICENSES[base or ""]
    datasets = source_hub_ids((config.get("data") or {}).get("prompt_sources") or [])
    if dataset_repo_id:
        datasets.append(dataset_repo_id)
    if datasets:
        meta["datasets"] = datasets
    meta["tags"] = list(dict.fromkeys([*TAGS, *(lin.method for lin in lineages)]))
    name = (config.get("training") or {}).get("run_name") or run_dir.resolve().name
    lines = [
        f"# {name}",
        "",
        "A run of [cream-plugin](https://github.com/cream-plugin/cream-plugin)"
        f" (methods: {', '.join(config.get('methods') or []) or '?'}; "
        f"{config.get('iterations', '?')} iterations; base model `{base or base_name}`).",
        "Each checkpoint is a sub-folder with its own model card recording its lineage.",
        "",
        "| checkpoint | method | iteration | parent | digest |",
        "|---|---|---|---|---|",
    ]
    for lin in lineages:
        lines.append(f"| [{lin.checkpoint}]({lin.checkpoint}/README.md) | {lin.method} | "
                     f"{card_value(lin.iteration)} | {card_value(lin.parent)} | "
                     f"`{lin.digest or '?'}` |")
    example = checkpoints[0] if checkpoints else "M1"
    lines += [
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id}", subfolder="{example}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", subfolder="{example}")',
        "```",
    ]
    if report:
        lines += ["", "The run's report with its benchmark and consistency tables: "
                  "[report.md](report.md); raw tables: `results.jsonl`, `consistency.jsonl`, "
                  "`timings.jsonl`; the run config: `config.json`."]
    if dataset_repo_id:
        lines += ["", f"Samples and preference pairs: the data set `{dataset_repo_id}`."]
    return front_matter(meta, "\n".join(lines))


def file_digest(path: str | os.PathLike[str]) -> str:
    """First 16 hex digits of a file's sha256 (the length of the run manifests' digests)."""
    from cream_plugin.loop.files import cached_sha256

    return cached_sha256(Path(path))[:16]


def folder_digest(folder: str | os.PathLike[str]) -> str:
    """A checkpoint folder's digest: its run manifest's when it has one (a run checkpoint),
    else a sha256 over every file's path and content (the card excluded)."""
    import hashlib

    folder = Path(folder)
    manifest = read_manifest(folder.with_name(folder.name + MANIFEST_SUFFIX))
    if manifest and manifest.get("digest"):
        return str(manifest["digest"])
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CARD_NAME):
        sha.update(path.relative_to(folder).as_posix().encode())
        sha.update(file_digest(path).encode())
    return sha.hexdigest()[:16]


def standalone_lineage(
    pairs_file: str | os.PathLike[str],
    model: str,
    *,
    method: str,
    checkpoint: str,
    training: Mapping[str, Any],
) -> Lineage:
    """The lineage of a checkpoint trained outside a run (``cream train``): the parent is the
    model it started from (its base model is carried over from the parent's own card), the
    pairs file is identified by its manifest digest or its content hash, and C is summarised
    from the file's ``consistency`` column."""
    import statistics

    from cream_plugin.loop.jsonl import read_jsonl

    pairs_path = Path(pairs_file)
    manifest = read_manifest(pairs_path.with_name(pairs_path.stem + MANIFEST_SUFFIX)) or {}
    rows = read_jsonl(pairs_path)
    values = [float(r["consistency"]) for r in rows if r.get("consistency") is not None]
    consistency = None
    if values:
        consistency = {"C": {
            "mean": statistics.fmean(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n": len(values),
        }}
    parent_path = Path(model)
    parent_meta = read_card_metadata(parent_path) if parent_path.is_dir() else {}
    base = parent_meta.get("base_model") or hub_model_id(model) or model
    return Lineage(
        method=method,
        checkpoint=checkpoint,
        base_model=str(base),
        parent=model,
        parent_digest=folder_digest(parent_path) if parent_path.is_dir() else None,
        pairs=ArtifactRef(
            path=str(pairs_path),
            digest=str(manifest.get("digest") or file_digest(pairs_path)),
            rows=len(rows),
            bytes=pairs_path.stat().st_size,
        ),
        consistency=consistency,
        training=dict(training),
        datasets=[str(d) for d in parent_meta.get("datasets") or []],
        license=parent_meta.get("license"),
    )
