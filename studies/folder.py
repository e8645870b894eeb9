"""Reading a study folder (``seed-*``, one whole run per seed) or its packed copy.

A packed copy (``studies/pack.py``) holds the same files with large ``.jsonl`` gzip-compressed
to ``.jsonl.gz``; every reader here takes either, so the tables come out identical from both.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

BASE_METHODS = ("sft", "srlm", "oracle", "cream-no-rc", "cream", "scir")
CONTROLS = ("cream-shuffled-c", "cream-c-half", "cream-no-rc-matched-lr", "cream-no-rc-lennorm")
LOGLIK_TASKS = ("cream_arc_easy", "cream_arc_challenge", "cream_openbookqa", "cream_siqa")
COT_TASKS = tuple(t.replace("cream_", "cream_cot_") for t in LOGLIK_TASKS)
SHORT_NAMES = {"arc_easy": "ARC-E", "arc_challenge": "ARC-C", "openbookqa": "OBQA", "siqa": "SIQA"}
MEASURES = ("C", "kendall", "spearman", "toporder")
NOT_METRICS = frozenset({"kind", "method", "iteration", "task", "doc_id", "filter"})


def short_name(task: str) -> str:
    """ARC-E for cream_arc_easy, cream_cot_arc_easy and cream_open_arc_easy; else the task."""
    base = task.removeprefix("cream_").removeprefix("cot_").removeprefix("open_")
    return SHORT_NAMES.get(base, task)


def stored(path: Path) -> Path | None:
    """``path`` or its gzip-compressed copy ``path.gz``, whichever exists (None if neither)."""
    if path.is_file():
        return path
    packed = path.with_name(path.name + ".gz")
    return packed if packed.is_file() else None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a jsonl file or of its ``.gz`` copy; [] when neither exists."""
    found = stored(path)
    if found is None:
        return []
    raw = gzip.decompress(found.read_bytes()) if found.suffix == ".gz" else found.read_bytes()
    rows = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise SystemExit(f"{found}:{number}: not a JSON row ({err.msg})") from err
    return rows


def seed_runs(top: Path) -> list[Path]:
    """The finished seed folders (report.md written) of a study folder, in seed order; a single
    run folder counts as one seed."""
    def number(p: Path) -> tuple[int, str]:
        tail = p.name.rpartition("-")[2]
        return (int(tail) if tail.isdigit() else 0, p.name)

    found = sorted((p for p in top.glob("seed-*") if (p / "report.md").is_file()), key=number)
    if not found and (top / "report.md").is_file():
        return [top]
    if not found:
        raise SystemExit(f"{top}: no finished seed-* folder (report.md missing)")
    return found


def seed_label(run: Path) -> str:
    """A seed folder's name; "run" for a single run folder (whatever its name, so a packed
    copy prints the same tables)."""
    return run.name if run.name.startswith("seed-") else "run"


def methods_in(runs: list[Path]) -> list[str]:
    """Methods with an evaluated model in any seed: the paper's order, the controls, then any
    other method found (sorted)."""
    names: set[str] = set()
    for run in runs:
        for path in (run / "evals").glob("*-M*.jsonl*"):
            names.add(path.name.split(".")[0].rpartition("-M")[0])
    known = [m for m in (*BASE_METHODS, *CONTROLS) if m in names]
    return known + sorted(names - set(known))


def model_label(method: str, t: int) -> str:
    """Evaluation artifact name of M_t of ``method`` (M1 is the shared SFT model)."""
    return "sft-M1" if t == 1 else f"{method}-M{t}"


@cache
def item_metrics(run: Path, method: str, t: int) -> dict[str, dict[int, dict[str, float]]]:
    """task -> doc_id -> metric -> score for M_t of ``method`` in one seed (per-item rows of the
    evaluation artifact; one filter per task, the first the rows name). Cached: the tables
    read each model's rows many times; callers must not modify the result."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    chosen: dict[str, str] = {}
    for row in read_jsonl(run / "evals" / f"{model_label(method, t)}.jsonl"):
        if row.get("kind") != "item":
            continue
        task = str(row["task"])
        if chosen.setdefault(task, str(row.get("filter"))) != str(row.get("filter")):
            continue
        out.setdefault(task, {})[int(row["doc_id"])] = {
            k: float(v) for k, v in row.items()
            if k not in NOT_METRICS and isinstance(v, int | float)}
    return out


def consistency_rows(run: Path, method: str, t: int) -> dict[str, dict[str, float]]:
    """prompt_id -> {C, kendall, spearman, toporder} of iteration t (M_t's rewards against
    M_(t-1)'s); C is undefined (NaN) where Kendall's tau is."""
    out = {}
    for r in read_jsonl(run / method / f"iter{t}" / "consistency.jsonl"):
        row: dict[str, float] = {k: float(r[k]) for k in MEASURES if k in r}
        if not np.isfinite(row.get("kendall", np.nan)):
            row["C"] = np.nan
        out[str(r["prompt_id"])] = row
    return out


def prompt_lengths(path: Path) -> dict[str, float]:
    """Mean response length in characters per prompt id of one samples file."""
    return {str(r["prompt_id"]): float(np.mean([len(x) for x in r["responses"]]))
            for r in read_jsonl(path) if r.get("responses")}


def pool_accuracy(path: Path) -> dict[str, float]:
    """Share of correct responses per prompt of one correctness file (prompts with no gold
    answer left out)."""
    out = {}
    for r in read_jsonl(path):
        c = np.array(r["correct"], dtype=float)
        if np.isfinite(c).any():
            out[str(r["prompt_id"])] = float(np.nanmean(c))
    return out
