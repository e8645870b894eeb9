"""The run's instruments gathered for the report: every evidence and movement artifact, paired
comparisons of every two models on the same benchmark items, and the training curves.

Written to ``instruments.json`` (the typed :class:`~cream_plugin.instruments.Evidence`, for
scripts) and rendered as the report's first sections, beginning with the plain-language
summary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cream_plugin.instruments.evidence import Evidence
from cream_plugin.loop.artifacts import Artifact, TempJournal, atomic_write_text, read_manifests

INSTRUMENTS_FILE = "instruments.json"
CURVES_PLOT = "plots/train_curves.png"


def merge(parts: list[Mapping[str, Any]]) -> Evidence:
    """One Evidence from several artifacts' dicts (their lists concatenated)."""
    merged: dict[str, list[Any]] = {}
    for part in parts:
        for key, rows in part.items():
            merged.setdefault(key, []).extend(rows)
    return Evidence.from_dict(merged)


def _eval_settings(run_dir: Path) -> str | None:
    from cream_plugin.report.results import current_eval_settings

    return current_eval_settings(run_dir)


def item_scores_by_model(run_dir: Path) -> dict[tuple[str, str], dict[str, dict[Any, float]]]:
    """(task, metric) -> model label ("cream M2") -> doc_id -> score, for the current
    evaluation settings; the task's main metric (acc; exact_match, strict-match for GSM8K)."""
    from cream_plugin.loop.stages.evaluate import item_rows
    from cream_plugin.report.results import main_metric

    settings = _eval_settings(run_dir)
    out: dict[tuple[str, str], dict[str, dict[Any, float]]] = {}
    manifests = read_manifests(run_dir)
    order = sorted(
        (name for name, m in manifests.items() if m.get("step") == "evaluate"),
        key=lambda n: (manifests[n].get("method") != "sft", manifests[n].get("iteration", 0), n),
    )
    for name in order:
        rows = Artifact(run_dir, name, "").read_rows()
        if settings and any(r.get("eval_settings") not in (None, settings) for r in rows
                            if r.get("kind") != "item"):
            continue
        m = manifests[name]
        label = f"{m.get('method')} M{m.get('iteration')}"
        for item in item_rows(rows):
            task = str(item["task"])
            metrics = [k for k in item if k not in ("kind", "method", "iteration", "task",
                                                    "doc_id", "filter")]
            full = [f"{k},{item['filter']}" for k in metrics]
            chosen = main_metric(task, full)
            metric, filt = chosen.split(",", 1)
            if item["filter"] != filt or metric not in item:
                continue
            scores = out.setdefault((task, chosen), {}).setdefault(label, {})
            scores[item["doc_id"]] = float(item[metric])
    return out


def comparisons(run_dir: Path) -> Evidence:
    from cream_plugin.instruments.collect import compare_models

    ev = Evidence()
    for (task, metric), scores in item_scores_by_model(run_dir).items():
        if len(scores) >= 2:
            ev.comparisons.extend(compare_models(task, metric, scores))
    return ev


def train_curves_plot(run_dir: Path) -> str | None:
    """Loss, margins, consistency/mean, grad norm and lr per training stage, as one PNG."""
    from cream_plugin.instruments.train_log import plot_train_curves, train_curves

    runs = {}
    for name, m in read_manifests(run_dir).items():
        log = run_dir / f"{name}.train_log.json"
        if m.get("step") == "train" and log.is_file():
            runs[f"{m.get('method')} it{m.get('iteration')}"] = train_curves(log)
    if not runs:
        return None
    plot_train_curves(runs, run_dir / CURVES_PLOT)
    return CURVES_PLOT


def collect(run_dir: Path, seed: int = 0) -> Evidence:
    """Every instrument of the run folder."""
    parts = []
    for name, m in read_manifests(run_dir).items():
        if m.get("step") in ("evidence", "movement", "same-prompt-pool"):
            for row in Artifact(run_dir, name, "").read_rows():
                parts.append(row["evidence"])
    parts.append(comparisons(run_dir).to_dict())
    return merge(parts)


def write_instruments(run_dir: Path, seed: int = 0) -> Path:
    """``instruments.json`` and the training-curves plot of a run folder."""
    evidence = collect(run_dir, seed)
    train_curves_plot(run_dir)
    path = run_dir / INSTRUMENTS_FILE
    atomic_write_text(path, json.dumps(evidence.to_dict(), indent=1), TempJournal(run_dir))
    return path


def evidence_sections(run_dir: Path) -> str | None:
    """The report's summary and instrument sections, from ``instruments.json``."""
    from cream_plugin.instruments.render import render_evidence

    path = run_dir / INSTRUMENTS_FILE
    if not path.is_file():
        return None
    evidence = Evidence.from_dict(json.loads(path.read_text(encoding="utf-8")))
    plots = {"training curves": CURVES_PLOT} if (run_dir / CURVES_PLOT).is_file() else {}
    return render_evidence(evidence, plots=plots)
