"""The paper's ranking-consistency table (Table 2's shape) and its comparison of consistency
measures (Kendall, Spearman, TopOrder), from the consistency stage's per-prompt rows.

Iteration t's rows (``<method>/iter<t>/consistency.jsonl``) rank M_t's responses by M_t's
rewards and by M_(t-1)'s: iteration 2 is "M2 vs M1"; iteration 3, written by the consistency
stage after the last training iteration (``consistency.after_last``), is "M3 vs M2".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.intervals import t_interval
from cream_plugin.instruments.roc import compare_aucs, delong_auc
from studies.anticorrelation import read_logps
from studies.cells import Family, level, tested, within
from studies.folder import MEASURES, consistency_rows, read_jsonl, seed_label

COMPARED = {1: "M1 vs M0", 2: "M2 vs M1", 3: "M3 vs M2"}


def seed_means(runs: list[Path], method: str, t: int, measure: str) -> tuple[list[float], int]:
    """Per seed, the mean of ``measure`` over the prompts where it is defined; and the number of
    such prompts over all seeds."""
    means, prompts = [], 0
    for run in runs:
        values = [r.get(measure, np.nan) for r in consistency_rows(run, method, t).values()]
        finite = [v for v in values if np.isfinite(v)]
        if finite:
            means.append(float(np.mean(finite)))
            prompts += len(finite)
    return means, prompts


def mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
    return f"{np.mean(values):.3f}{sd}"


def ranking_consistency(runs: list[Path], methods: list[str]) -> list[str]:
    out = ["", "## Ranking consistency (the paper's Table 2 shape)", "",
           "Per method and iteration: each seed's mean over prompts, then mean ± sd over seeds "
           "(sd of the per-seed means); n = seeds / prompts in all. C = (Kendall tau + 1) / 2.",
           "", "| method | models | C | Kendall tau | Spearman rho | TopOrder | "
           "n (seeds / prompts) |",
           "|---|---|---|---|---|---|---|"]
    missing = []
    for m in methods:
        for t, label in COMPARED.items():
            stats = {k: seed_means(runs, m, t, k) for k in MEASURES}
            if not stats["kendall"][0] and not stats["C"][0]:
                if t == 3 and any((r / m / "iter2" / "consistency.jsonl").exists()
                                  or (r / m / "iter2" / "consistency.jsonl.gz").exists()
                                  for r in runs):
                    missing.append(m)
                continue
            cells = " | ".join(mean_sd(stats[k][0]) for k in MEASURES)
            out.append(f"| {m} | {label} | {cells} | {len(stats['C'][0])} / "
                       f"{stats['C'][1]} |")
    if missing:
        out += ["", f"M3 vs M2: absent for {', '.join(missing)} (no iteration-3 consistency "
                "rows in this folder: the run did not measure consistency after the last "
                "iteration, `consistency.after_last`)."]
    return out


def label_cases(run: Path, method: str, t: int) -> list[tuple[bool, dict[str, float]]]:
    """Per prompt whose best and worst response (by r_t) differ in correctness: whether the
    label is right, and the prompt's consistency under each measure (as C in [0, 1])."""
    scope = run / ("shared/iter1" if t == 1 else f"{method}/iter{t}")
    now_key = "M1" if t == 1 else f"{method}-M{t}"
    before_key = {1: "M0", 2: "M1"}.get(t, f"{method}-M{t - 1}")
    try:
        now = read_logps(scope / f"logps-{now_key}.jsonl")
        before = read_logps(scope / f"logps-{before_key}.jsonl")
    except ValueError:
        return []
    correctness = read_jsonl(scope / "correctness.jsonl")
    stats = consistency_rows(run, method, t)
    if not correctness or now.sum.shape[0] != len(correctness):
        return []
    rewards = now.sum - before.sum
    cases = []
    for i, row in enumerate(correctness):
        r, pid = rewards[i], str(row["prompt_id"])
        if not np.isfinite(r).all() or np.ptp(r) == 0 or pid not in stats:
            continue
        correct = np.array(row["correct"], dtype=float)
        best, worst = correct[int(np.argmax(r))], correct[int(np.argmin(r))]
        if np.isnan(best) or np.isnan(worst) or best == worst:
            continue
        s = stats[pid]
        cases.append((bool(best > worst), {"kendall": (s["kendall"] + 1) / 2,
                                           "spearman": (s["spearman"] + 1) / 2,
                                           "toporder": s["toporder"]}))
    return cases


IMPLICIT = ("cream-no-rc", "cream", "scir")


def auc(values: list[float], right: list[bool]) -> Estimate:
    return delong_auc(values, right) if values else undefined("no case")


def measure_cases(runs: list[Path]) -> list[list[tuple[bool, dict[str, float]]]]:
    """Per seed: iteration 1 once (M1's samples are shared), then iterations 2 and 3 of the
    implicit-reward methods."""
    return [label_cases(r, "cream", 1)
            + [c for m in IMPLICIT for t in (2, 3) for c in label_cases(r, m, t)] for r in runs]


def consistency_measures(runs: list[Path], family: Family) -> list[str]:
    out = ["", "## Which consistency measure carries information about label correctness", "",
           "A proxy for the paper's comparison of Kendall, Spearman and TopOrder: the AUC of "
           "each measure's C for \"the pair's label is right\", over prompts whose chosen and "
           "rejected responses differ in gold correctness (implicit-reward methods; iteration 1 "
           "once per seed, iterations 2 and 3 for cream-no-rc, cream and scir). **Seeds "
           "pooled**: the cases of all seeds together (DeLong; two measures compared with "
           "DeLong's paired test on the same cases); the per-seed AUCs follow, and their mean "
           "over seeds (t-interval clipped to [0, 1], n = seeds) is the seed-level check.", "",
           "| measure | AUC, seeds pooled (DeLong) | AUC per seed (cases) | mean of the per-seed "
           "AUCs |", "|---|---|---|---|"]
    per_seed = measure_cases(runs)
    cases = [c for seed in per_seed for c in seed]
    right = np.array([c[0] for c in cases], dtype=bool)
    scores = {k: [c[1][k] for c in cases] for k in ("kendall", "spearman", "toporder")}
    for k, values in scores.items():
        each, seed_aucs = [], []
        for run, seed in zip(runs, per_seed, strict=True):
            e = auc([c[1][k] for c in seed], [c[0] for c in seed])
            name = seed_label(run)
            each.append(f"{name} {e.value:.3f} ({len(seed)})" if e.defined
                        else f"{name} n/a ({len(seed)})")
            if e.defined:
                seed_aucs.append(e.value)
        pooled = tested(auc(values, list(right)), family=family, label=f"AUC {k} (seeds pooled)")
        mean = (level(within(t_interval(seed_aucs, what="seeds"), 0.0, 1.0)) if seed_aucs
                else "n/a")
        out.append(f"| {k} | {pooled} | {'; '.join(each)} | {mean} |")
    for other in ("spearman", "toporder"):
        gap = (compare_aucs(scores[other], scores["kendall"], right) if cases
               else undefined("no case"))
        text = tested(gap, family=family, label=f"AUC kendall - {other} (seeds pooled)")
        out.append(f"| kendall - {other} | {text} | | |")
    return out
