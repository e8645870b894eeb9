"""Several seeds of one config: each seed is a whole run in ``<output>/seed-<s>``; the top
folder's report treats the seeds as the replicates. Every paired comparison is made within each
seed (McNemar on that seed's items), then summarised across seeds (mean of the per-seed
differences, t-interval over seeds) with a forest plot per headline comparison; proportions are
aggregated on the logit scale so their intervals stay inside [0, 1]."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.evidence import (
    Evidence,
    SeedComparisonRow,
    SeedRow,
    SeedValue,
    is_headline,
    last_iterations,
)
from cream_plugin.instruments.seeds import (
    across_seeds,
    aggregate_seeds,
    proportion_across_seeds,
)
from cream_plugin.loop.artifacts import TempJournal, atomic_write_text

FOREST_DIR = "plots/forest"


def seed_dir(top: Path, seed: int) -> Path:
    return top / f"seed-{seed}"


def _seed_of(folder: Path) -> int:
    found = re.search(r"(\d+)$", folder.name)
    return int(found.group(1)) if found else 0


def _evidence(folder: Path) -> Evidence:
    path = folder / "instruments.json"
    return Evidence.from_dict(json.loads(path.read_text())) if path.is_file() else Evidence()


def _levels(folders: Sequence[Path]) -> list[dict[str, Any]]:
    """Benchmark levels per seed (main metric): 0/1 items as counts, others as values."""
    from cream_plugin.report.evidence import item_scores_by_model
    from cream_plugin.report.results import (
        current_eval_settings,
        main_metric,
        read_results,
        rows_for_settings,
    )

    out = []
    for folder in folders:
        by_model = item_scores_by_model(folder)
        rows, _ = rows_for_settings(read_results(folder), current_eval_settings(folder))
        tasks: dict[str, set[str]] = {}
        for r in rows:
            tasks.setdefault(str(r["task"]), set()).add(str(r["metric"]))
        chosen = {t: main_metric(t, ms) for t, ms in tasks.items()}
        for r in rows:
            if r["metric"] != chosen[str(r["task"])]:
                continue
            metric = str(r["metric"])
            per_task = by_model.get((str(r["task"]), metric if "," in metric
                                     else f"{metric},none"), {})
            items = per_task.get(f"{r['method']} M{r['iteration']}", {})
            binary = bool(items) and all(v in (0.0, 1.0) for v in items.values())
            out.append({**r, "k": int(sum(items.values())) if binary else None,
                        "n": len(items) if binary else None})
    return out


def _proportion_rows(evidences: Sequence[Evidence]) -> Iterable[SeedRow]:
    """Pool accuracy and label accuracy per (method, iteration[, reward]) across seeds."""
    groups: dict[tuple[str, str, float | None], list[Estimate]] = {}
    for ev in evidences:
        for p in ev.pool_accuracy:
            key: tuple[str, str, float | None] = (f"{p.method}, iteration {p.iteration}",
                                                  "pool accuracy", None)
            groups.setdefault(key, []).append(p.accuracy)
        for q in ev.reward_quality:
            key = (f"{q.method}, iteration {q.iteration}", f"label accuracy of {q.reward}", 0.5)
            groups.setdefault(key, []).append(q.accuracy)
    for (label, quantity, chance), per_seed in groups.items():
        counts = [(round(e.value * e.n), e.n) for e in per_seed if e.defined]
        est = (proportion_across_seeds(counts, chance=chance) if counts else
               undefined(f"in no seed ({per_seed[0].reason or 'no data'})"))
        yield SeedRow(label, quantity, est, chance)


def seed_comparisons(folders: Sequence[Path], evidences: Sequence[Evidence], top: Path | None
                     = None) -> list[SeedComparisonRow]:
    """Headline comparisons per seed and across seeds; with ``top``, a forest plot each."""
    from cream_plugin.instruments.forest import forest_plot

    per: dict[tuple[str, str, str, str], list[SeedValue]] = {}
    last = last_iterations(m for ev in evidences for c in ev.comparisons
                           for m in (c.model_a, c.model_b))
    for folder, ev in zip(folders, evidences, strict=True):
        for c in ev.comparisons:
            per.setdefault((c.task, c.metric, c.model_a, c.model_b), []).append(
                SeedValue(_seed_of(folder), c.comparison.difference))
    rows = []
    for (task, metric, a, b), values in per.items():
        if not is_headline(a, b, last):
            continue
        across = across_seeds([v.estimate.value for v in values])
        row = SeedComparisonRow(task, metric, a, b, values, across)
        if top is not None:
            name = re.sub(r"[^A-Za-z0-9]+", "-", f"{task} {b} vs {a}").strip("-").lower()
            forest_plot(f"{task} ({metric.split(',')[0]}): {b} − {a}",
                        [(f"seed {v.seed} (within-seed)", v.estimate) for v in values],
                        across, top / FOREST_DIR / f"{name}.png")
            row.plot = f"{FOREST_DIR}/{name}.png"
        rows.append(row)
    return rows


def seed_evidence(folders: Sequence[Path], top: Path | None = None) -> Evidence:
    """Across-seed rows: benchmarks (main metric), consistency C, the instruments, and the
    headline comparisons made per seed (forest plots under ``top`` when given)."""
    evidences = [_evidence(f) for f in folders]
    ev = Evidence()
    levels = _levels(folders)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in levels:
        groups.setdefault((f"{r['method']} M{r['iteration']}",
                           f"{r['task']} {str(r['metric']).split(',')[0]}"), []).append(r)
    for (label, quantity), rows in groups.items():
        if all(r["n"] for r in rows):
            est = proportion_across_seeds([(r["k"], r["n"]) for r in rows])
        else:
            est = across_seeds([float(r["value"]) for r in rows])
        ev.seeds.append(SeedRow(label, quantity, est))
    consistency = []
    for folder in folders:
        path = folder / "consistency.jsonl"
        if path.is_file():
            consistency += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    for (method, it, metric), est in aggregate_seeds(
        consistency, ("method", "iteration", "metric"), value="mean"
    ).items():
        ev.seeds.append(SeedRow(f"{method}, iteration {it}", f"consistency {metric}", est))
    ev.seeds.extend(_proportion_rows(evidences))
    movement = [{"method": r.method, "iteration": r.iteration,
                 "value": r.movement.mean_abs_delta.value} for e in evidences for r in e.movement]
    for (method, it), est in aggregate_seeds(movement, ("method", "iteration")).items():
        ev.seeds.append(SeedRow(f"{method}, iteration {it}", "mean |delta log-prob| per token",
                                est))
    ev.seed_comparisons = seed_comparisons(folders, evidences, top)
    return ev


def write_seeds_report(top: Path, seeds: Sequence[int]) -> Path:
    """``<top>/report.md`` and ``instruments.json`` across the seeds' run folders."""
    from cream_plugin.instruments.render import render_evidence

    folders = [seed_dir(top, s) for s in seeds]
    evidence = seed_evidence(folders, top)
    journal = TempJournal(top)
    atomic_write_text(top / "instruments.json", json.dumps(evidence.to_dict(), indent=1),
                      journal)
    links = "\n".join(f"- seed {s}: [{seed_dir(top, s).name}/report.md]"
                      f"({seed_dir(top, s).name}/report.md)" for s in seeds)
    text = "\n".join([
        f"# Run report: {top.name} ({len(seeds)} seeds)", "",
        render_evidence(evidence), "",
        f"The same configuration run under seeds {', '.join(map(str, seeds))}. Seeds are the "
        "replicates: each comparison is made within each seed (paired on that seed's items; "
        "those tests, in the per-seed reports, are within-seed), then the per-seed differences "
        "are averaged with a 95% t-interval over seeds (n = seeds). Whether the seeds also "
        "drew different benchmark items depends on the evaluation settings (see each seed's "
        "report).", "",
        "## Per-seed reports", "", links, "",
    ])
    atomic_write_text(top / "report.md", text, journal)
    return top / "report.md"
