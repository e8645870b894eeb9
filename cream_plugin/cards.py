"""Model and data set cards with lineage: what produced a checkpoint or an artifact.

A card is a ``README.md``: YAML metadata the Hugging Face Hub reads (``base_model``, ``datasets``,
``tags``, ``library_name``, ``configs``), then a body a person reads. A model card records the
checkpoint's lineage (method, iteration, parent checkpoint and its digest, the pairs artifact's
digest and size, the ranking-consistency summary, training settings, the iteration's benchmark
and instrument results), also as a machine-readable ``cream`` key, so the chain of checkpoints
can be followed once a checkpoint has left its run folder. A data set card lists JSON-lines
artifacts as ``configs`` so ``datasets.load_dataset(folder, name)`` and the Hub viewer load them.

:func:`lineage_from_run` reads a checkpoint's lineage from a run folder's manifests (linked by
digest, not by stage names); :func:`write_run_cards` (re)writes every card of a run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cream_plugin.artifacts import MANIFEST_SUFFIX, atomic_write_text
from cream_plugin.errors import DataError

CARD_NAME = "README.md"
TAGS = ("cream", "dpo", "trl", "self-rewarding", "cream-plugin")
DATASET_STEPS = ("sample", "pairs")
"""Manifest ``step`` values of the artifacts that get a data set card."""

# Built-in model names (cream_plugin.models) -> the Hub repository they come from.
BUILTIN_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
KNOWN_LICENSES = {"HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0"}

METHOD_TEXT = {
    "sft": "supervised fine-tuning of the base model on the seed set (M1)",
    "srlm": "self-rewarding LM: responses ranked by the model as an LLM judge, DPO",
    "oracle": "responses ranked by an external reward (answer key or reward model), DPO",
    "cream-no-rc": "DPO implicit reward of M_t against M_(t-1), plain DPO (CREAM w/o RC)",
    "cream": "DPO implicit reward, each pair weighted by the ranking consistency C of M_t vs "
    "M_(t-1) (CREAM)",
    "scir": "DPO implicit reward pairs, trained so the implicit and the generative internal "
    "rewards agree (SCIR)",
}

PAIRS_COLUMNS = {
    "prompt_id": "stable id of the prompt (source/split-index)",
    "prompt": "the prompt as chat messages",
    "chosen": "the response ranked best by the reward, as an assistant message",
    "rejected": "the response ranked worst by the reward, as an assistant message",
    "chosen_reward": "reward of the chosen response",
    "rejected_reward": "reward of the rejected response",
    "consistency": "C in [0, 1]: how far the label is trusted (1 = plain DPO)",
    "ref_chosen_logps": "summed log-prob of the chosen response under M_t (DPO reference)",
    "ref_rejected_logps": "summed log-prob of the rejected response under M_t (DPO reference)",
}
SAMPLES_COLUMNS = {
    "prompt_id": "stable id of the prompt (source/split-index)",
    "prompt": "the prompt as chat messages",
    "source": "the data set the prompt was drawn from",
    "reference": "the gold answer where the source has one (else null)",
    "iteration": "the iteration whose prompt pool the prompt belongs to",
    "responses": "the N sampled responses of M_t (seeded)",
}


@dataclass(frozen=True)
class ArtifactRef:
    """A JSON-lines artifact a checkpoint was trained on: where, which, how big."""

    path: str
    digest: str
    rows: int | None = None
    bytes: int | None = None
    sha256: str | None = None


@dataclass
class Lineage:
    """What produced one checkpoint. ``iteration`` t means M_t was trained on iteration t's
    pairs into this checkpoint (M_(t+1)); it is None for SFT and for stand-alone training."""

    method: str
    checkpoint: str
    iteration: int | None = None
    digest: str | None = None
    base_model: str | None = None
    parent: str | None = None
    parent_digest: str | None = None
    pairs: ArtifactRef | None = None
    consistency: Mapping[str, Mapping[str, Any]] | None = None
    training: Mapping[str, Any] = field(default_factory=dict)
    benchmarks: Mapping[str, Mapping[str, Any]] | None = None
    instruments: Mapping[str, Any] | None = None
    datasets: Sequence[str] = ()
    license: str | None = None
    run_name: str | None = None
    tags: Sequence[str] = ()

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))


# -- helpers ---------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Plain YAML/JSON data: tuples to lists, NaN to None, mappings to dicts."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def hub_model_id(name: str | None) -> str | None:
    """The Hub repository id of a model name for ``base_model``, or None (a local path or a
    built-in with no Hub repository: the Hub rejects a ``base_model`` that is not a repo id)."""
    if not name:
        return None
    if name in BUILTIN_HUB_IDS:
        return BUILTIN_HUB_IDS[name]
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not Path(name).exists():
        return name
    return None


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _front_matter(meta: Mapping[str, Any], body: str) -> str:
    text = yaml.safe_dump(_jsonable(meta), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{text}---\n\n{body.rstrip()}\n"


def read_card_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The YAML metadata of a card (a README.md or the folder holding one); {} when none."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.DOTALL)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: card metadata is not valid YAML: {exc}") from None
    return data if isinstance(data, dict) else {}


# -- model cards -----------------------------------------------------------------------------
def model_card_text(lineage: Lineage) -> str:
    """A model card (Hub YAML metadata + lineage body) for one checkpoint."""
    lin = lineage
    base = hub_model_id(lin.base_model)
    meta: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-generation"}
    if base:
        meta.update(base_model=base, base_model_relation="finetune")
    license_ = lin.license or KNOWN_LICENSES.get(base or "")
    if license_:
        meta["license"] = license_
    if lin.datasets:
        meta["datasets"] = list(dict.fromkeys(lin.datasets))
    meta["tags"] = list(dict.fromkeys([*TAGS, lin.method, *lin.tags]))
    meta["cream"] = {k: v for k, v in lin.to_dict().items() if k not in ("tags", "datasets")}

    title = f"{lin.run_name} · {lin.checkpoint}" if lin.run_name else lin.checkpoint
    lines = [
        f"# {title}",
        "",
        f"A checkpoint written by [cream-plugin](https://github.com/cream-plugin/cream-plugin): "
        f"**{lin.method}**, {METHOD_TEXT.get(lin.method, 'preference training')}.",
        "",
        "## Lineage",
        "",
        "| | |",
        "|---|---|",
        f"| method | {_fmt(lin.method)} |",
        f"| checkpoint | {_fmt(lin.checkpoint)} (digest `{lin.digest or '?'}`) |",
    ]
    if lin.iteration is not None:
        lines.append(f"| iteration | {lin.iteration}: trained on iteration {lin.iteration}'s "
                     "pairs from its parent |")
    if lin.parent:
        lines.append(f"| parent checkpoint | {_fmt(lin.parent)} (digest "
                     f"`{lin.parent_digest or '?'}`) |")
    lines.append(f"| base model | {_fmt(base or lin.base_model)} |")
    if lin.pairs:
        p = lin.pairs
        lines.append(
            f"| preference pairs | `{p.path}`: {_fmt(p.rows)} rows, {human_size(p.bytes)}, "
            f"digest `{p.digest}` |"
        )
    if lin.run_name:
        lines.append(f"| run | {_fmt(lin.run_name)} |")
    if lin.consistency:
        lines += ["", "## Ranking consistency of the training pairs", "",
                  "| metric | mean | std | n |", "|---|---|---|---|"]
        for metric, s in lin.consistency.items():
            lines.append(f"| {metric} | {_fmt(s.get('mean'))} | {_fmt(s.get('std'))} "
                         f"| {_fmt(s.get('n'))} |")
    if lin.training:
        lines += ["", "## Training settings", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in _flatten(lin.training)]
    if lin.benchmarks:
        lines += ["", "## Benchmarks", "", "| task | metric | value |", "|---|---|---|"]
        for task, metrics in lin.benchmarks.items():
            lines += [f"| {task} | {m} | {_fmt(v)} |" for m, v in metrics.items()]
    if lin.instruments:
        lines += ["", "## Instruments", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in _flatten(lin.instruments)]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")  # add subfolder= on the Hub',
        'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")',
        "```",
        "",
        "The same lineage is machine-readable under the `cream` key of this card's metadata.",
    ]
    return _front_matter(meta, "\n".join(lines))


def write_model_card(folder: str | os.PathLike[str], lineage: Lineage) -> Path:
    """Write ``folder/README.md`` (atomically; replaces any card there); returns its path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no checkpoint folder to write a model card into")
    path = folder / CARD_NAME
    atomic_write_text(path, model_card_text(lineage))
    return path


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


def _read_manifest(path: Path) -> dict[str, Any] | None:
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
    manifest = _read_manifest(jsonl.with_name(jsonl.name[: -len(".jsonl")] + MANIFEST_SUFFIX))
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
            f"| {e.config_name} | `{e.path}` | {e.kind} | {_fmt(e.method)} | {_fmt(e.iteration)} "
            f"| {_fmt(e.rows)} | {human_size(e.bytes)} | `{e.digest or '?'}` |"
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
    return _front_matter(meta, "\n".join(lines))


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
        manifest = _read_manifest(candidate.with_name(candidate.stem + MANIFEST_SUFFIX))
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


# -- lineage from a run folder ---------------------------------------------------------------
def read_manifests(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every stage manifest of a run folder by stage name (hidden scratch folders skipped)."""
    run_dir = Path(run_dir)
    out = {}
    for path in sorted(run_dir.rglob(f"*{MANIFEST_SUFFIX}")):
        rel = path.relative_to(run_dir).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue
        manifest = _read_manifest(path)
        if manifest is not None:
            out[rel[: -len(MANIFEST_SUFFIX)]] = manifest
    return out


def _run_config(run_dir: Path) -> dict[str, Any]:
    data = _read_manifest(run_dir / "config.json")
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
                     f"{_fmt(lin.iteration)} | {_fmt(lin.parent)} | `{lin.digest or '?'}` |")
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
    return _front_matter(meta, "\n".join(lines))


def file_digest(path: str | os.PathLike[str]) -> str:
    """First 16 hex digits of a file's sha256 (the length of the run manifests' digests)."""
    import hashlib

    sha = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def folder_digest(folder: str | os.PathLike[str]) -> str:
    """A checkpoint folder's digest: its run manifest's when it has one (a run checkpoint),
    else a sha256 over every file's path and content (the card excluded)."""
    import hashlib

    folder = Path(folder)
    manifest = _read_manifest(folder.with_name(folder.name + MANIFEST_SUFFIX))
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

    from cream_plugin.data import read_jsonl

    pairs_path = Path(pairs_file)
    manifest = _read_manifest(pairs_path.with_name(pairs_path.stem + MANIFEST_SUFFIX)) or {}
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
