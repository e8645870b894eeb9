"""The run's results table: ``<run_dir>/results.jsonl``, one row per (method, iteration, task,
metric, evaluation settings). Rows are replaced, never duplicated, when an evaluation with the
same settings is repeated; rows of other settings (another ``evaluation.limit``) are kept apart,
never mixed into one table (:func:`rows_for_settings`). The file is rewritten atomically (temp
file + rename) so a killed run never leaves half a table.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.loop.artifacts import atomic_write_text
from cream_plugin.loop.jsonl import read_jsonl

RESULTS_FILE = "results.jsonl"
KEY = ("method", "iteration", "task", "metric", "eval_settings")
FIELDS: dict[str, tuple[type, ...]] = {
    "method": (str,),
    "iteration": (int,),
    "task": (str,),
    "metric": (str,),
    "value": (int, float),
    "stderr": (int, float, type(None)),
    "limit": (int, type(None)),
    "seconds": (int, float),
}


def results_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / RESULTS_FILE


def check_row(row: dict[str, Any]) -> str | None:
    """What is wrong with a results row, or None."""
    missing = [name for name in FIELDS if name not in row]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    for name, types in FIELDS.items():
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, types):
            allowed = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            return f"field {name!r} must be {allowed}, got {value!r}"
    return None


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row.get(name) for name in FIELDS}
    out["eval_settings"] = row.get("eval_settings")
    stderr = out["stderr"]
    if isinstance(stderr, float) and math.isnan(stderr):
        out["stderr"] = None  # lm-eval reports N/A / NaN when there is no stderr
    out.update({k: v for k, v in row.items() if k not in FIELDS})
    return out


def read_results(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All rows of the table (empty if there is none yet); a bad row names file and line."""
    path = results_path(run_dir)
    if not path.exists():
        return []
    return read_jsonl(path, check_row)


def append_results(run_dir: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> Path:
    """Add rows, replacing any row with the same (method, iteration, task, metric)."""
    new = []
    for i, raw in enumerate(rows):
        row = _normalise(raw) if set(FIELDS) <= set(raw) else raw
        problem = check_row(row)
        if problem:
            raise DataError(f"results row {i + 1} ({raw}): {problem}")
        new.append(row)
    path = results_path(run_dir)
    table = {tuple(r.get(k) for k in KEY): r for r in read_results(run_dir)}
    for row in new:
        table[tuple(row.get(k) for k in KEY)] = row
    atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in table.values()))
    return path


def rows_for_settings(
    rows: list[dict[str, Any]], settings: str | None
) -> tuple[list[dict[str, Any]], int]:
    """The rows made with evaluation settings ``settings`` (all when None) and how many rows
    of other settings were left out."""
    if settings is None:
        return rows, 0
    kept = [r for r in rows if r.get("eval_settings") in (settings, None)]
    return kept, len(rows) - len(kept)


MAIN_METRICS = (
    "exact_match,strict-match",
    "exact_match,flexible-extract",
    "exact_match",
    "acc,none",
    "acc",
    "contains_gold,none",
    "contains_gold",
)


def main_metric(task: str, metrics: Iterable[str]) -> str:
    """The metric shown for a task: exact_match for generative tasks, else acc (not acc_norm);
    contains_gold for the open-question tasks (not their f1 or answer length)."""
    available = list(metrics)
    preferred = MAIN_METRICS if "gsm8k" in task else MAIN_METRICS[3:] + MAIN_METRICS[:3]
    for name in preferred:
        if name in available:
            return name
    for name in available:
        if name.split(",")[0] in {"acc", "exact_match"}:
            return name
    return sorted(available)[0]


def current_eval_settings(run_dir: Path) -> str | None:
    """The evaluation settings' hash of the run's current config (None without a config)."""
    from cream_plugin.config import load_config
    from cream_plugin.errors import ConfigError

    try:
        data = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        return load_config(base=data).section_hash("evaluation")
    except (OSError, ValueError, ConfigError):
        return None
