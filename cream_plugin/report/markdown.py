"""The run report: benchmark, ranking-consistency and timing tables plus plots, as Markdown.

Reads the tables the pipeline appends to (``results.jsonl``, ``consistency.jsonl``,
``timings.jsonl``); when a row was written twice (a resumed run), the last one wins. The
benchmark table has the shape of the CREAM paper's Table 1: one row per method and model
iteration (M1 = SFT), one column per task, the task's main metric as value ± stderr in %.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.report.results import (
    current_eval_settings,
    main_metric,
    rows_for_settings,
)

CONSISTENCY_METRICS = ("C", "kendall", "spearman", "toporder", "scir_C")
# Preferred main metric, best first: exact match for generative tasks, accuracy otherwise.


def read_table(path: Path, required: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of a JSON-lines table ([] when absent); a bad row names the file and line."""
    if not path.is_file():
        return []
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise DataError(f"{path}:{lineno}: not valid JSON") from None
        missing = [k for k in required if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
        rows.append(row)
    return rows


def _last_by(
    rows: Iterable[dict[str, Any]], keys: Sequence[str]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        latest[tuple(row[k] for k in keys)] = row
    return latest


def _method_order(rows: Iterable[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(r["method"]) for r in rows))


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _pm(value: Any, err: Any, scale: float = 1.0, digits: int = 2) -> str:
    v = _num(value)
    if v is None:
        return "–"
    e = _num(err)
    text = f"{v * scale:.{digits}f}"
    return f"{text} ± {e * scale:.{digits}f}" if e is not None else text


def _markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def benchmark_table(results: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """Markdown of Table 1 and the metric chosen per task."""
    latest = _last_by(results, ("method", "iteration", "task", "metric"))
    tasks = list(dict.fromkeys(str(r["task"]) for r in results))
    chosen = {
        task: main_metric(task, dict.fromkeys(k[3] for k in latest if k[2] == task))
        for task in tasks
    }
    models = sorted(
        {(str(k[0]), int(k[1])) for k in latest},
        key=lambda m: (_method_order(results).index(m[0]), m[1]),
    )
    body = []
    for method, it in models:
        cells = []
        for task in tasks:
            row = latest.get((method, it, task, chosen[task]))
            cells.append(_pm(row["value"], row.get("stderr"), 100) if row else "–")
        body.append([method, f"M{it}", *cells])
    header = ["method", "model", *[f"{t} ({chosen[t].split(',')[0]})" for t in tasks]]
    return _markdown_table(header, body), chosen


def consistency_table(rows: list[dict[str, Any]]) -> str:
    latest = _last_by(rows, ("method", "iteration", "metric"))
    metrics = [m for m in CONSISTENCY_METRICS if any(k[2] == m for k in latest)]
    metrics += sorted({str(k[2]) for k in latest} - set(metrics))
    order = _method_order(rows)
    pairs = sorted(
        {(str(k[0]), int(k[1])) for k in latest}, key=lambda m: (order.index(m[0]), m[1])
    )
    body = []
    for method, it in pairs:
        cells = []
        for metric in metrics:
            row = latest.get((method, it, metric))
            cells.append(_pm(row["mean"], row.get("std"), 1, 3) if row else "–")
        n = next(
            (latest[(method, it, m)].get("n") for m in metrics if (method, it, m) in latest), ""
        )
        body.append([method, f"M{it} vs M{it - 1}", *cells, str(n)])
    return _markdown_table(["method", "models", *metrics, "n"], body)


def timings_table(rows: list[dict[str, Any]]) -> str:
    totals: dict[tuple[str, int], dict[str, float]] = {}
    stages: list[str] = []
    for row in rows:
        key = (str(row["method"]), int(row["iteration"]))
        stage = str(row["stage"])
        if stage not in stages:
            stages.append(stage)
        seconds = _num(row["seconds"]) or 0.0
        totals.setdefault(key, {})[stage] = totals.get(key, {}).get(stage, 0.0) + seconds
    order = _method_order(rows)
    body = []
    for (method, it), per in sorted(
        totals.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])
    ):
        cells = [f"{per[s]:.1f}" if s in per else "–" for s in stages]
        body.append([method, str(it), *cells, f"{sum(per.values()):.1f}"])
    return _markdown_table(["method", "iteration", *stages, "total"], body)


def _plot_lines(
    series: dict[str, dict[str, list[tuple[int, float, float | None]]]],
    path: Path,
    ylabel: str,
    xlabel: str,
) -> None:
    """One subplot per panel key, one line (with error bars) per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(series)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for method, points in series[panel].items():
            points = sorted(points)
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            errs = [p[2] if p[2] is not None else 0.0 for p in points]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=method)
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xticks(sorted({p[0] for pts in series[panel].values() for p in pts}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def item_selection(run_dir: Path) -> str:
    """How each task's benchmark items were chosen, from the evaluation manifests (one rule per
    run: every model of a run scores the same items)."""
    from cream_plugin.loop.artifacts import MANIFEST_SUFFIX

    rules: dict[str, dict[str, Any]] = {}
    for path in sorted((run_dir / "evals").glob(f"*{MANIFEST_SUFFIX}")):
        try:
            items = json.loads(path.read_text(encoding="utf-8")).get("items") or {}
        except (OSError, ValueError):
            continue
        for task, how in items.items():
            rules.setdefault(task, how)
    if not rules:
        return ""
    described = []
    for task, how in rules.items():
        count = len(how["doc_ids"]) if "doc_ids" in how else how["of"]
        described.append(f"{task} {how['rule']}, {count} of {how['of']}")
    seeded = any("doc_ids" in how for how in rules.values())
    return ("Benchmark items: " + "; ".join(described) + "."
            + (" Each seed scores its own sample, so seeds replicate items too; the doc ids are "
               "in evals/*.manifest.json." if seeded else ""))


def write_report(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``report.md`` (and ``plots/*.png``) for a run folder; returns the report's path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run folder {run_dir} does not exist")
    results = read_table(
        run_dir / "results.jsonl", ("method", "iteration", "task", "metric", "value")
    )
    consistency = read_table(
        run_dir / "consistency.jsonl", ("method", "iteration", "metric", "mean")
    )
    timings = read_table(run_dir / "timings.jsonl", ("method", "iteration", "stage", "seconds"))
    if not (results or consistency or timings):
        raise DataError(
            f"{run_dir} has no results.jsonl, consistency.jsonl or timings.jsonl to report on"
        )
    results, other_settings = rows_for_settings(results, current_eval_settings(run_dir))
    out_path = Path(out) if out else run_dir / "report.md"
    plots = out_path.parent / "plots"
    parts = [f"# Run report: {run_dir.name}", ""]
    from cream_plugin.report.evidence import evidence_sections
    from cream_plugin.report.rewards import callouts, reward_rows, rewards_section

    instruments = evidence_sections(run_dir)
    rewards = rewards_section(run_dir)
    if instruments and rewards:
        parts += [place_rewards(instruments, rewards, callouts(reward_rows(run_dir))), ""]
    else:  # rewards first: an iteration that trained on nothing must not be missed
        for section in (rewards, instruments):
            if section:
                parts += [section, ""]
    if results:
        table, chosen = benchmark_table(results)
        parts += [
            "## Benchmarks",
            "",
            "Main metric per task in % (± stderr); M1 is the SFT model, M(t+1) is trained from "
            "M(t)'s own preference pairs.",
            "",
            table,
            "",
        ]
        selection = item_selection(run_dir)
        if selection:
            parts += [selection, ""]
        if other_settings:
            parts += [
                f"{other_settings} rows of results.jsonl were made with other evaluation "
                "settings (e.g. another limit) and are not shown.",
                "",
            ]
        latest = _last_by(results, ("method", "iteration", "task", "metric"))
        series: dict[str, dict[str, list[tuple[int, float, float | None]]]] = {}
        for (method, it, task, metric), row in latest.items():
            value = _num(row["value"])
            if metric != chosen[task] or value is None:
                continue
            err = _num(row.get("stderr"))
            series.setdefault(task, {}).setdefault(str(method), []).append(
                (int(it), value * 100, err * 100 if err is not None else None)
            )
        if series:
            _plot_lines(series, plots / "scores.png", "score (%)", "model iteration (M_t)")
            parts += ["![benchmark scores per iteration](plots/scores.png)", ""]
    if consistency:
        parts += [
            "## Ranking consistency",
            "",
            "Agreement of the rankings of the same responses by M_t and M_(t-1) "
            "(mean ± std over prompts): C is CREAM's consistency rate under the configured "
            "metric; kendall and spearman are the raw tau and rho, toporder the share of prompts "
            "where both models pick the same best and worst response. scir_C (method scir) is "
            "the share of the iteration's pairs on which M_t's two internal reward models, the "
            "implicit DPO reward and the generative judge, prefer the same response.",
            "",
            consistency_table(consistency),
            "",
        ]
        cseries: dict[str, dict[str, list[tuple[int, float, float | None]]]] = {}
        for (method, it, metric), row in _last_by(
            consistency, ("method", "iteration", "metric")
        ).items():
            mean = _num(row["mean"])
            if mean is not None:
                cseries.setdefault(str(metric), {}).setdefault(str(method), []).append(
                    (int(it), mean, _num(row.get("std")))
                )
        _plot_lines(cseries, plots / "consistency.png", "consistency", "iteration t (M_t vs M_t-1)")
        parts += ["![ranking consistency per iteration](plots/consistency.png)", ""]
    if timings:
        parts += ["## Timings (seconds per stage)", "", timings_table(timings), ""]
        starts = sum(_num(r.get("engine_start_seconds")) or 0.0 for r in timings)
        if starts:
            parts += [f"Of these, {starts:.1f} s were spent starting vLLM engines.", ""]
    from cream_plugin.loop.artifacts import TempJournal, atomic_write_text

    inside = out_path.resolve().parent == run_dir.resolve()
    atomic_write_text(out_path, "\n".join(parts), TempJournal(run_dir) if inside else None)
    return out_path


def place_rewards(instruments: str, rewards: str, watch: list[str]) -> str:
    """The report opens with the instruments' bottom line; the rewards-and-pairs callouts (no
    pairs, C = 1) follow it at once, and the rewards section comes after the summary."""
    glossary = instruments.find("\n## Glossary")
    summary = instruments.find("\n## Summary")
    after = instruments.find("\n## ", summary + 1) if summary >= 0 else -1
    if glossary < 0 or after < 0:
        return rewards + "\n\n" + instruments
    opening = instruments[:glossary].rstrip()
    if watch:
        opening += "\n\n" + "\n".join(watch)
    return (opening + "\n" + instruments[glossary:after].rstrip() + "\n\n" + rewards
            + "\n" + instruments[after:])
