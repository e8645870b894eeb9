"""Several seeds of one config: each seed is a whole run in ``<output>/seed-<s>``; the top
folder's report aggregates each figure across seeds (mean and 95% t-interval), because seeds
are the only replicates that say how much a figure would move on a rerun."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cream_plugin.artifacts import TempJournal, atomic_write_text
from cream_plugin.instruments.evidence import Evidence, SeedRow
from cream_plugin.instruments.seeds import aggregate_seeds


def seed_dir(top: Path, seed: int) -> Path:
    return top / f"seed-{seed}"


def _rows(folders: Iterable[Path]) -> tuple[list[dict[str, Any]], ...]:
    from cream_plugin.report import current_eval_settings, main_metric
    from cream_plugin.results import read_results, rows_for_settings

    results, consistency, instruments = [], [], []
    for folder in folders:
        rows, _ = rows_for_settings(read_results(folder), current_eval_settings(folder))
        tasks: dict[str, set[str]] = {}
        for r in rows:
            tasks.setdefault(str(r["task"]), set()).add(str(r["metric"]))
        chosen = {t: main_metric(t, ms) for t, ms in tasks.items()}
        results += [r for r in rows if r["metric"] == chosen[str(r["task"])]]
        path = folder / "consistency.jsonl"
        if path.is_file():
            consistency += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        path = folder / "instruments.json"
        if path.is_file():
            ev = Evidence.from_dict(json.loads(path.read_text()))
            instruments += [
                {"method": r.method, "iteration": r.iteration, "quantity": "pool accuracy",
                 "value": r.accuracy.value} for r in ev.pool_accuracy
            ]
            instruments += [
                {"method": r.method, "iteration": r.iteration,
                 "quantity": f"label accuracy of {r.reward}", "value": r.accuracy.value}
                for r in ev.reward_quality
            ]
            instruments += [
                {"method": r.method, "iteration": r.iteration,
                 "quantity": "mean |delta log-prob| per token",
                 "value": r.movement.mean_abs_delta.value} for r in ev.movement
            ]
    return results, consistency, instruments


def seed_evidence(folders: Sequence[Path]) -> Evidence:
    """SeedRows for benchmarks (main metric), consistency C and the instruments."""
    results, consistency, instruments = _rows(folders)
    ev = Evidence()
    for (method, it, task, metric), est in aggregate_seeds(
        results, ("method", "iteration", "task", "metric")
    ).items():
        ev.seeds.append(SeedRow(f"{method} M{it}", f"{task} {metric.split(',')[0]}", est))
    for (method, it, metric), est in aggregate_seeds(
        consistency, ("method", "iteration", "metric"), value="mean"
    ).items():
        ev.seeds.append(SeedRow(f"{method} iteration {it}", f"consistency {metric}", est))
    for (method, it, quantity), est in aggregate_seeds(
        instruments, ("method", "iteration", "quantity")
    ).items():
        chance = 0.5 if quantity.startswith("label accuracy") else None
        ev.seeds.append(SeedRow(f"{method} iteration {it}", quantity, est, chance))
    return ev


def write_seeds_report(top: Path, seeds: Sequence[int]) -> Path:
    """``<top>/report.md`` and ``instruments.json`` across the seeds' run folders."""
    from cream_plugin.instruments.render import render_evidence

    folders = [seed_dir(top, s) for s in seeds]
    evidence = seed_evidence(folders)
    journal = TempJournal(top)
    atomic_write_text(top / "instruments.json", json.dumps(evidence.to_dict(), indent=1),
                      journal)
    links = "\n".join(f"- seed {s}: [{seed_dir(top, s).name}/report.md]"
                      f"({seed_dir(top, s).name}/report.md)" for s in seeds)
    text = "\n".join([
        f"# Run report: {top.name} ({len(seeds)} seeds)", "",
        f"The same configuration run under seeds {', '.join(map(str, seeds))}; every figure "
        "below is the mean over seeds with a 95% t-interval (n = seeds).", "",
        render_evidence(evidence), "", "## Per-seed reports", "", links, "",
    ])
    atomic_write_text(top / "report.md", text, journal)
    return top / "report.md"
