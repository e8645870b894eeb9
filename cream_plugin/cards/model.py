"""Model cards: YAML metadata for the Hub and the checkpoint's lineage as text."""

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

from cream_plugin.errors import DataError
from cream_plugin.loop.artifacts import atomic_write_text

CARD_NAME = "README.md"
TAGS = ("cream", "dpo", "trl", "self-rewarding", "cream-plugin")
DATASET_STEPS = ("sample", "pairs")
"""Manifest ``step`` values of the artifacts that get a data set card."""

# Built-in model names (cream_plugin.forward.models) -> the Hub repository they come from.
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


def card_value(value: Any) -> str:
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


def front_matter(meta: Mapping[str, Any], body: str) -> str:
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
        f"| method | {card_value(lin.method)} |",
        f"| checkpoint | {card_value(lin.checkpoint)} (digest `{lin.digest or '?'}`) |",
    ]
    if lin.iteration is not None:
        lines.append(f"| iteration | {lin.iteration}: trained on iteration {lin.iteration}'s "
                     "pairs from its parent |")
    if lin.parent:
        lines.append(f"| parent checkpoint | {card_value(lin.parent)} (digest "
                     f"`{lin.parent_digest or '?'}`) |")
    lines.append(f"| base model | {card_value(base or lin.base_model)} |")
    if lin.pairs:
        p = lin.pairs
        lines.append(
            f"| preference pairs | `{p.path}`: {card_value(p.rows)} rows, {human_size(p.bytes)}, "
            f"digest `{p.digest}` |"
        )
    if lin.run_name:
        lines.append(f"| run | {card_value(lin.run_name)} |")
    if lin.consistency:
        lines += ["", "## Ranking consistency of the training pairs", "",
                  "| metric | mean | std | n |", "|---|---|---|---|"]
        for metric, s in lin.consistency.items():
            lines.append(f"| {metric} | {card_value(s.get('mean'))} | {card_value(s.get('std'))} "
                         f"| {card_value(s.get('n'))} |")
    if lin.training:
        lines += ["", "## Training settings", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {card_value(v)} |" for k, v in _flatten(lin.training)]
    if lin.benchmarks:
        lines += ["", "## Benchmarks", "", "| task | metric | value |", "|---|---|---|"]
        for task, metrics in lin.benchmarks.items():
            lines += [f"| {task} | {m} | {card_value(v)} |" for m, v in metrics.items()]
    if lin.instruments:
        lines += ["", "## Instruments", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {card_value(v)} |" for k, v in _flatten(lin.instruments)]
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
    return front_matter(meta, "\n".join(lines))


def write_model_card(folder: str | os.PathLike[str], lineage: Lineage) -> Path:
    """Write ``folder/README.md`` (atomically; replaces any card there); returns its path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no checkpoint folder to write a model card into")
    path = folder / CARD_NAME
    atomic_write_text(path, model_card_text(lineage))
    return path
