"""The controls table for the length finding: per method, how long its models answer on the
same prompts, the paired difference from cream-no-rc, how far each model moved (exact KL per
token) and the accuracy of its sampled pool, so which control removes the effect is readable.

Same prompts: iteration 2's prompts are answered by M1 (``shared/iter2/M1``, the same for every
method) and by each method's M2 (``<method>/iter2``); iteration 3's by each method's M3
(``<method>/iter3``, present when the run measured consistency after the last iteration).
Every method samples the same prompts with the same seed, so per-prompt differences between
methods are paired within a seed; the per-seed mean differences are then averaged over seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cream_plugin.instruments.intervals import t_interval
from cream_plugin.instruments.seeds import across_seeds
from studies.cells import (
    Family,
    level,
    paired_seed_means,
    per_seed_text,
    seed_level,
    tested,
    within,
)
from studies.folder import CONTROLS, pool_accuracy, prompt_lengths, read_jsonl

REFERENCE = "cream-no-rc"
METHODS = (REFERENCE, "cream", *CONTROLS)


def in_order(methods: list[str]) -> list[str]:
    """The reference, CREAM and the controls first, then every other trained method."""
    first = [m for m in METHODS if m in methods]
    return first + [m for m in methods if m not in first and m != "sft"]


def samples_path(run: Path, method: str, t: int) -> Path:
    """Where M_t of ``method`` answered the prompts of the iteration it is compared on."""
    return run / "shared/iter2/M1" if t == 1 else run / method / f"iter{t}"


def lengths(runs: list[Path], method: str, t: int) -> list[dict[str, float]]:
    return [prompt_lengths(samples_path(r, method, t) / "samples.jsonl") for r in runs]


def mean_length(run: Path, method: str, t: int) -> float:
    """One seed's mean answer length over its prompts (NaN when it has none)."""
    values = np.fromiter(lengths([run], method, t)[0].values(), dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def pools(runs: list[Path], method: str, t: int) -> list[dict[str, float]]:
    return [pool_accuracy(samples_path(r, method, t) / "correctness.jsonl") for r in runs]


def exact_kl(run: Path, method: str, t: int) -> float:
    """KL(M_(t+1) || M_t) per token (nats) from the exact-KL stage of iteration t: summed over
    every scored response, divided by their tokens (NaN when the stage did not run)."""
    rows = read_jsonl(run / method / f"iter{t}" / "exact-kl.jsonl")
    kl = sum(float(np.nansum(r["kl_forward"])) for r in rows)
    tokens = sum(float(np.sum(r["num_tokens"])) for r in rows)
    return kl / tokens if tokens else float("nan")


def movement(runs: list[Path], method: str, t: int) -> str:
    values = [v for v in (exact_kl(r, method, t) for r in runs) if np.isfinite(v)]
    if not values:
        return "n/a"
    e = within(t_interval(values, what="seeds"), 0.0)  # a KL is never negative
    return (f"{e.value:.3g} ({e.low:.3g} to {e.high:.3g})" if e.has_interval
            else f"{e.value:.3g}")


def versus_reference(runs: list[Path], method: str, t: int,
                     read: Callable[[list[Path], str, int], list[dict[str, float]]],
                     scale: str, family: Family, what: str) -> str:
    if method == REFERENCE:
        return ""
    d = paired_seed_means(read(runs, method, t), read(runs, REFERENCE, t))
    e = across_seeds(d)
    label = f"{what} M{t}: {method} - {REFERENCE}"
    text = tested(e, scale, family, label)
    return f"{text}; per seed {per_seed_text(d, scale)}" if d else text


def controls_table(runs: list[Path], methods: list[str], family: Family) -> list[str]:
    present = in_order(methods)
    out = ["", "## Controls for the length finding", "",
           "Mean response length in characters (each seed's mean over prompts, then mean over "
           "seeds with the t-interval, clipped at 0); M1 and M2 on iteration 2's prompts, M3 on "
           "iteration 3's. "
           f"Differences vs {REFERENCE}: per prompt within a seed, each seed's mean, then t over "
           "seeds (n = seeds, MDE at 80% power). Movement: exact KL(M_(t+1) || M_t) per token "
           "(nats) on the samples the exact-KL stage scored.", "",
           "| method | M1 length | M2 length | M3 length | M2 - no-RC (chars) | "
           "M3 - no-RC (chars) | KL M1->M2 | KL M2->M3 |", "|---|---|---|---|---|---|---|---|"]
    for m in present:
        cells = [level(seed_level(lengths(runs, m, t)), digits=1, floor=0.0)
                 for t in (1, 2, 3)]
        cells += [versus_reference(runs, m, t, lengths, "num", family, "length")
                  for t in (2, 3)]
        cells += [movement(runs, m, t) for t in (1, 2)]
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    out += ["", "Pool accuracy (share of a prompt's sampled responses with the gold answer; "
            "prompts with a gold answer), same prompts as above.", "",
            "| method | M1 pool | M2 pool | M3 pool | M2 - no-RC (points) | M3 - no-RC (points) |",
            "|---|---|---|---|---|---|"]
    for m in present:
        cells = [level(seed_level(pools(runs, m, t)), "pct") for t in (1, 2, 3)]
        cells += [versus_reference(runs, m, t, pools, "points", family, "pool accuracy")
                  for t in (2, 3)]
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return out


def open_controls(runs: list[Path], methods: list[str], family: Family) -> list[str]:
    """Open-question accuracy and answer length of each method's M2 and M3 (the cost of short
    answers where no option letter can be right by itself)."""
    from studies.items import compare
    from studies.table_benchmarks import length_metric, open_tasks, scores

    tasks = open_tasks(runs)
    present = in_order(methods)
    if not tasks:
        return ["", "No open-question (`cream_open_*`) item rows: open-question accuracy and "
                "length per method are not in this folder."]
    length = length_metric(runs, tasks)
    out = ["", f"Open questions ({', '.join(tasks)}): contains_gold and answer length "
           f"(`{length}`) per method; differences vs {REFERENCE} paired by item within a seed "
           "(McNemar for contains_gold), then t over seeds.", "",
           "| method | M2 contains_gold | M3 contains_gold | M3 - no-RC (points) | M2 length | "
           "M3 length |", "|---|---|---|---|---|---|"]
    for m in present:
        acc = {t: scores(runs, m, t, tasks, "contains_gold")["Average"] for t in (2, 3)}
        size = {t: scores(runs, m, t, tasks, length)["Average"] if length else None
                for t in (2, 3)}
        diff = ""
        if m != REFERENCE:
            c = compare(runs, (REFERENCE, 3), (m, 3), tasks, "contains_gold")
            diff = tested(c.across, "points", family,
                          f"open contains_gold M3: {m} - {REFERENCE}")
        out.append(f"| {m} | {level(acc[2], 'pct')} | {level(acc[3], 'pct')} | {diff} | "
                   + " | ".join(level(s, digits=1, floor=0.0) if s else "n/a"
                                for s in size.values())
                   + " |")
    return out


IMPLICIT = (REFERENCE, "cream", "scir", *CONTROLS)  # trained on implicit-reward labels


def movement_and_length(runs: list[Path], methods: list[str]) -> list[str]:
    """Does how far a method moved predict how short its answers got? Per seed, Spearman's rho
    across the implicit-reward methods between exact KL(M_t || M_(t-1)) per token and M_t's
    mean answer length; then t over seeds. Post hoc (chosen after seeing seeds 1-3), so outside
    the Holm family and read as a description of the controls, not as a verdict."""
    from scipy.stats import spearmanr

    present = [m for m in IMPLICIT if m in methods]
    out = ["", "### Movement against length across the implicit-reward methods (post hoc)", "",
           f"Per seed, Spearman's rho over the {len(present)} methods trained on implicit-reward "
           f"labels ({', '.join(present)}) between how far M_t moved from M_(t-1) (exact KL per "
           "token) and M_t's mean answer length on the table's prompts; then the mean over seeds "
           "(t-interval clipped to [-1, 1], t-test against 0). Chosen after seeds 1-3 were "
           "seen, so it is outside the Holm family: a description, not a verdict.", "",
           "| model | rho per seed (methods) | mean over seeds (95%; p; n; MDE) |", "|---|---|---|"]
    for t in (2, 3):
        rhos, counts = [], []
        for run in runs:
            pairs = [(exact_kl(run, m, t - 1), mean_length(run, m, t)) for m in present]
            pairs = [(k, n) for k, n in pairs if np.isfinite(k) and np.isfinite(n)]
            if len(pairs) >= 3:
                rhos.append(float(spearmanr(*zip(*pairs, strict=True)).statistic))
                counts.append(len(pairs))
        e = across_seeds(rhos)
        cell = tested(within(e, -1.0, 1.0)) if rhos else "n/a (no exact-KL rows)"
        per = ", ".join(f"{r:+.2f} ({c})" for r, c in zip(rhos, counts, strict=True)) or "n/a"
        out.append(f"| M{t} (KL M{t - 1}->M{t}) | {per} | {cell} |")
    return out
