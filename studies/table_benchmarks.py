"""Table 1's shape: per benchmark (and the average), methods as rows and M1, M2, M3 as columns,
for both evaluation protocols, with the CREAM paper's Llama-3-8B numbers beside ours.

A cell is the mean over seeds of the seed's score on that benchmark's items (each seed has its
own seeded sample of items), with the t-interval over seeds. The average is, per seed, the mean
of the four benchmarks' scores (the paper's unweighted average), then across seeds. M1 is the
shared SFT model, so every method's M1 column repeats the sft row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.intervals import t_interval
from studies.cells import level
from studies.folder import COT_TASKS, LOGLIK_TASKS, item_metrics, short_name

PAPER = Path(__file__).with_name("paper_numbers.json")
ITERATIONS = (1, 2, 3)
MISSING = "n/a (not found offline)"


def paper_numbers() -> dict:
    return json.loads(PAPER.read_text(encoding="utf-8"))


def task_score(run: Path, method: str, t: int, task: str, metric: str) -> float:
    """One seed's mean of ``metric`` over ``task``'s items for M_t (NaN when not evaluated)."""
    items = item_metrics(run, method, t).get(task, {})
    values = [m[metric] for m in items.values() if metric in m and np.isfinite(m[metric])]
    return float(np.mean(values)) if values else float("nan")


def across(values: Sequence[float]) -> Estimate:
    """A level over seeds: mean with the t-interval (no test, so no MDE to compute)."""
    return t_interval([v for v in values if np.isfinite(v)], what="seeds")


def scores(runs: list[Path], method: str, t: int, tasks: Sequence[str], metric: str
           ) -> dict[str, Estimate]:
    """Benchmark name (and "Average") -> estimate over seeds."""
    per_seed = np.array([[task_score(r, method, t, task, metric) for task in tasks]
                         for r in runs], dtype=float).reshape(len(runs), len(tasks))
    out = {short_name(task): across(per_seed[:, i].tolist()) for i, task in enumerate(tasks)}
    complete = np.isfinite(per_seed).all(axis=1)
    out["Average"] = across(per_seed[complete].mean(axis=1).tolist() if complete.any() else [])
    return out


def has_metric(runs: list[Path], tasks: Sequence[str], metric: str) -> bool:
    return any(np.isfinite(task_score(r, "sft", 1, task, metric)) for r in runs for task in tasks)


def protocol_tables(runs: list[Path], methods: list[str], tasks: Sequence[str], metric: str,
                    title: str, scale: str = "pct", paper_key: str | None = None) -> list[str]:
    """One small table per benchmark and the average for one protocol and metric."""
    cols = {(m, t): scores(runs, m, t, tasks, metric) for m in methods for t in ITERATIONS
            if t == 1 or m != "sft"}
    names = [*(short_name(task) for task in tasks), "Average"]
    paper = paper_numbers() if paper_key else {}
    out = ["", f"### {title}", "",
           f"Mean over {len(runs)} seeds (95% t-interval over seeds, clipped to 0-100%); tasks: "
           f"{', '.join(tasks)}; metric: `{metric}`."]
    if paper_key:
        like = ("the paper's protocol" if metric == "exact_match" else "the paper evaluates "
                "generations, so beside this protocol they are a reference, not a like-for-like "
                "figure")
        out.append(f"Paper columns: {paper.get('model', '')}, {paper.get('table', '')} "
                   f"({paper.get('source', '')}); {like}.")
    for name in names:
        head = "| method | M1 | M2 | M3 |" + (" paper M1 | paper M2 | paper M3 |" if paper_key
                                                else "")
        out += ["", f"**{name}**", "", head, "|---" * (head.count("|") - 1) + "|"]
        for m in methods:
            cells = []
            for t in ITERATIONS:
                e = cols.get((m, t if m != "sft" else 1))
                cells.append(level(e[name], scale) if e and (t == 1 or m != "sft") else "")
            if paper_key:
                cells += [paper_cell(paper, paper_key, m, name, t) for t in ITERATIONS]
            out.append(f"| {m} | " + " | ".join(cells) + " |")
    return out


def paper_cell(paper: dict, protocol: str, method: str, bench: str, t: int) -> str:
    value = (paper.get(protocol, {}).get(method, {}).get(bench, {}) or {}).get(f"M{t}")
    return MISSING if value is None else f"{value:g}"


def benchmark_tables(runs: list[Path], methods: list[str]) -> list[str]:
    out = ["## Table 1's shape: benchmarks per method and iteration", "",
           "Both protocols for every model: the log-likelihood tasks (`cream_*`, options scored "
           "by likelihood after `Question: ... Answer:`) and the paper's generative protocol "
           "(`cream_cot_*`, greedy chat generation with the option letter extracted). The "
           "paper's columns are its Llama-3-8B numbers where they could be found offline."]
    out += protocol_tables(runs, methods, LOGLIK_TASKS, "acc", "Log-likelihood protocol, acc",
                           paper_key="table1")
    if has_metric(runs, LOGLIK_TASKS, "acc_norm"):
        out += protocol_tables(runs, methods, LOGLIK_TASKS, "acc_norm",
                               "Log-likelihood protocol, acc_norm (acc for tasks without it)")
    if has_metric(runs, COT_TASKS, "exact_match"):
        out += protocol_tables(runs, methods, COT_TASKS, "exact_match",
                               "Generative protocol (the paper's), exact_match",
                               paper_key="table1")
    else:
        out += ["", "### Generative protocol", "", "No `cream_cot_*` item rows in this folder."]
    out += open_tables(runs, methods)
    return out


def open_tasks(runs: list[Path]) -> list[str]:
    return sorted({task for r in runs for task in item_metrics(r, "sft", 1)
                   if task.startswith("cream_open_")})


def length_metric(runs: list[Path], tasks: Sequence[str]) -> str | None:
    for r in runs:
        for task in tasks:
            for item in item_metrics(r, "sft", 1).get(task, {}).values():
                for key in item:
                    if "length" in key or "chars" in key:
                        return key
    return None


def open_tables(runs: list[Path], methods: list[str]) -> list[str]:
    tasks = open_tasks(runs)
    if not tasks:
        return ["", "### Open questions", "", "No `cream_open_*` item rows in this folder."]
    out: list[str] = []
    for metric in ("contains_gold", "f1"):
        if has_metric(runs, tasks, metric):
            out += protocol_tables(runs, methods, tasks, metric,
                                   f"Open questions (no options), {metric}")
    length = length_metric(runs, tasks)
    if length:
        out += protocol_tables(runs, methods, tasks, length,
                               f"Open questions, answer length (`{length}`, characters)",
                               scale="num")
    return out
