"""Each claim of the CREAM and SCIR papers, measured on a `cream run --preset study` folder.

Run:  python studies/claims.py runs/study [--out docs/study-claims.md]

Reads the seed folders (seed-*) of the study: per-prompt consistency rows, per-response
correctness, the implicit-reward log-probs and the per-item benchmark rows. Seeds are the
replicates: every comparison is paired within a seed (same prompt or same benchmark item; exact
McNemar for 0/1 items), and the per-seed differences are summarised by their mean with a
t-interval over seeds; levels of a proportion use the logit scale. The AUCs pool the cases of
all seeds (labelled so). Every p-value is listed at the end with its Holm adjustment over the
family. The statistics are the library's (cream_plugin.instruments); intervals are 95%.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.fmt import interval, value
from cream_plugin.instruments.multiple import holm
from cream_plugin.instruments.paired import mcnemar_exact
from cream_plugin.instruments.roc import compare_aucs, delong_auc
from cream_plugin.instruments.seeds import across_seeds, proportion_across_seeds
from cream_plugin.report.results import main_metric
from studies.anticorrelation import read_logps


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def seeds(top: Path) -> list[Path]:
    found = sorted(p for p in top.glob("seed-*") if (p / "report.md").exists())
    if not found:
        raise SystemExit(f"{top}: no finished seed-* folder (report.md missing)")
    return found


FAMILY: list[tuple[str, Estimate]] = []
"""Every tested comparison of the document, for Holm's adjustment at the end."""


def cell(e: Estimate, scale: str = "num", test: bool = True, label: str = "") -> str:
    """Value (95% interval; p of the estimate's test; n; MDE); ``test=False`` for levels,
    whose test against 0 means nothing. A tested cell with a ``label`` joins the family."""
    p = "" if not test or not np.isfinite(e.p_value) else f"; p = {e.p_value:.3g}"
    mde = ""
    if test and np.isfinite(e.mde):
        mde = f"; MDE {100 * e.mde:.1f} points" if scale == "points" else f"; MDE {e.mde:.3g}"
    if test and label and np.isfinite(e.p_value):
        FAMILY.append((label, e))
    return f"{value(e, scale)} ({interval(e, scale)}{p}; n = {e.n}{mde})"


def by_seed(keys: dict[tuple[Any, ...], float]) -> dict[str, dict[tuple[Any, ...], float]]:
    """Split (seed, ...) -> value maps by their seed."""
    out: dict[str, dict[tuple[Any, ...], float]] = {}
    for k, v in keys.items():
        out.setdefault(str(k[0]), {})[k] = v
    return out


def seed_means(a: dict[tuple[Any, ...], float], b: dict[tuple[Any, ...], float]
               ) -> list[float]:
    """Per seed, the mean of the paired differences a - b (matched by key within the seed)."""
    sa, sb = by_seed(a), by_seed(b)
    out = []
    for seed in sa:
        d = paired(sa[seed].items(), sb.get(seed, {}))
        if d.size:
            out.append(float(d.mean()))
    return out


def per_seed_text(values: list[float], scale: str = "num") -> str:
    return ", ".join(f"{100 * v:+.1f}" if scale == "points" else f"{v:+.3f}" for v in values)


# -- ranking consistency ----------------------------------------------------------------------
def consistency(run: Path, method: str, t: int, metric: str = "C") -> dict[str, float]:
    path = run / method / f"iter{t}" / "consistency.jsonl"
    if not path.exists():
        return {}
    # C is undefined where Kendall's tau is (a ranking with no score, e.g. an unparsed judge),
    # whatever value the row carries for it.
    return {r["prompt_id"]: float(r[metric]) if np.isfinite(float(r["kendall"])) else np.nan
            for r in jsonl(path)}


def paired(a: Iterable[tuple[Any, float]], b: dict[Any, float]) -> np.ndarray:
    return np.array([x - b[k] for k, x in a if k in b and np.isfinite(x) and np.isfinite(b[k])])


def pooled_consistency(runs: list[Path], method: str, t: int, metric: str = "C"
                       ) -> dict[tuple[str, str], float]:
    return {(r.name, k): v for r in runs for k, v in consistency(r, method, t, metric).items()}


# -- benchmarks -------------------------------------------------------------------------------
def item_scores(run: Path, method: str, t: int, norm: bool = False
                ) -> dict[tuple[str, str, int], float]:
    """(seed, task, doc) -> score of M_t of ``method`` (M1 is the sft row): the report's main
    metric (acc), or with ``norm`` acc_norm where the task has it."""
    name = "sft-M1" if t == 1 else f"{method}-M{t}"
    rows = [r for r in jsonl(run / "evals" / f"{name}.jsonl") if r.get("kind") == "item"]
    metrics: dict[str, set[str]] = {}
    for r in rows:
        metrics.setdefault(r["task"], set()).update(
            k for k in r if k not in {"kind", "method", "iteration", "task", "doc_id", "filter"})
    chosen = {task: "acc_norm" if norm and "acc_norm" in ms else main_metric(task, ms)
              for task, ms in metrics.items()}
    return {(run.name, r["task"], r["doc_id"]): float(r[chosen[r["task"]]]) for r in rows}


def bench(runs: list[Path], method: str, t: int, norm: bool = False
          ) -> dict[tuple[str, str, int], float]:
    out: dict[tuple[str, str, int], float] = {}
    for r in runs:
        out |= item_scores(r, method, t, norm)
    return out


# -- informativeness of each consistency measure ----------------------------------------------
def label_cases(run: Path, method: str, t: int) -> list[tuple[bool, dict[str, float]]]:
    """Per prompt whose best and worst response (by r_t) differ in correctness: whether the
    label is right, and the prompt's consistency under each measure (as C in [0, 1])."""
    scope = run / ("shared/iter1" if t == 1 else f"{method}/iter{t}")
    now = read_logps(scope / f"logps-{'M1' if t == 1 else f'{method}-M2'}.jsonl")
    before = read_logps(scope / f"logps-{'M0' if t == 1 else 'M1'}.jsonl")
    rewards = now.sum - before.sum
    correct = np.array([r["correct"] for r in jsonl(scope / "correctness.jsonl")], dtype=float)
    ids = [r["prompt_id"] for r in jsonl(scope / "correctness.jsonl")]
    stats = {r["prompt_id"]: r for r in jsonl(run / method / f"iter{t}" / "consistency.jsonl")}
    cases = []
    for i, pid in enumerate(ids):
        r = rewards[i]
        if not np.isfinite(r).all() or np.ptp(r) == 0 or pid not in stats:
            continue
        best, worst = correct[i, int(np.argmax(r))], correct[i, int(np.argmin(r))]
        if np.isnan(best) or np.isnan(worst) or best == worst:
            continue
        s = stats[pid]
        as_c = {"kendall": (s["kendall"] + 1) / 2, "spearman": (s["spearman"] + 1) / 2,
                "toporder": s["toporder"]}
        cases.append((bool(best > worst), as_c))
    return cases


def seed_mcnemar(a: dict[tuple[str, str, int], float], b: dict[tuple[str, str, int], float]
                 ) -> list[Estimate]:
    """Per seed, McNemar's exact test of b - a on the items both models answered."""
    sa, sb = by_seed(a), by_seed(b)
    out = []
    for seed, items in sa.items():
        common = [k for k in items if k in sb.get(seed, {})]
        if common:
            test = mcnemar_exact([items[k] for k in common], [sb[seed][k] for k in common])
            if test.difference is not None:
                out.append(test.difference)
    return out


def benchmarks(runs: list[Path], methods: list[str], norm: bool, name: str) -> list[str]:
    out = ["", f"## Benchmarks: {name}; ARC-E, ARC-C, OBQA, SIQA items pooled within a seed", "",
           "| model | accuracy across seeds (logit-scale t-interval) |", "|---|---|"]
    models = [("sft", 1)] + [(m, t) for m in methods for t in (2, 3)]
    scores = {mt: bench(runs, *mt, norm=norm) for mt in models}
    for (m, t), s in scores.items():
        counts = [(int(sum(v.values())), len(v)) for v in by_seed(s).values()]
        level = proportion_across_seeds(counts)
        out.append(f"| {m} M{t} | {cell(level, 'pct', test=False)}; {level.reason} |")
    out += ["", "| comparison (McNemar within each seed, then t over seeds) | mean of per-seed "
            "differences (points) | per seed (within-seed McNemar p) |", "|---|---|---|"]
    comparisons = [(("cream", 3), ("cream-no-rc", 3)), (("cream", 3), ("srlm", 3)),
                   (("cream", 3), ("sft", 1)), (("cream", 2), ("cream-no-rc", 2)),
                   (("cream-no-rc", 3), ("sft", 1)), (("srlm", 3), ("srlm", 2)),
                   (("srlm", 3), ("sft", 1)), (("oracle", 3), ("sft", 1)),
                   (("scir", 3), ("cream-no-rc", 3)), (("cream-c1-first", 3), ("cream", 3))]
    for a, b in comparisons:
        per = seed_mcnemar(scores[b], scores[a])
        e = across_seeds([x.value for x in per])
        each = ", ".join(f"{100 * x.value:+.1f} (p {x.p_value:.2g})" for x in per)
        label = f"{name.split(',')[0]}: {a[0]} M{a[1]} - {b[0]} M{b[1]}"
        out.append(f"| {a[0]} M{a[1]} - {b[0]} M{b[1]} | {cell(e, 'points', label=label)} | "
                   f"{each} |")
    return out


def pool_rows(run: Path, method: str) -> dict[tuple[str, str], float]:
    """(seed, prompt) -> share of correct responses in ``method``'s iteration-2 pool."""
    rows = jsonl(run / method / "iter2" / "correctness.jsonl")
    out = {}
    for r in rows:
        c = np.array(r["correct"], dtype=float)
        if np.isfinite(c).any():
            out[(run.name, r["prompt_id"])] = float(np.nanmean(c))
    return out


def pool_accuracy(runs: list[Path], methods: list[str]) -> list[str]:
    """Iteration 2's pools: every method's M2 answers the same held-out prompts with the same
    sampling seed, so per-prompt differences are paired. srlm's M2 is M1 whenever its judge
    produced no pair (it then samples exactly M1's responses), which makes it M1's baseline."""
    out = ["", "## Pool accuracy of M2 (iteration 2's prompts, held out from training)", "",
           "| method | accuracy per prompt, mean over seeds | vs srlm's pool (paired by prompt "
           "within a seed, then t over seeds; points) | per seed |", "|---|---|---|---|"]
    pools = {m: {k: v for r in runs for k, v in pool_rows(r, m).items()} for m in methods}
    for m in methods:
        est = across_seeds([float(np.mean(list(v.values())))
                            for v in by_seed(pools[m]).values()])
        d = seed_means(pools[m], pools["srlm"])
        diff = cell(across_seeds(d), "points", label=f"pool accuracy {m} - srlm")
        out.append(f"| {m} | {cell(est, 'pct', test=False)} | {diff} | "
                   f"{per_seed_text(d, 'points')} |")
    d = seed_means(pools["cream"], pools["cream-no-rc"])
    out.append(f"| cream - cream-no-rc | | "
               f"{cell(across_seeds(d), 'points', label='pool accuracy cream - cream-no-rc')} | "
               f"{per_seed_text(d, 'points')} |")
    return out


# -- the claims ---------------------------------------------------------------------------------
def claims(top: Path) -> str:
    runs = seeds(top)
    FAMILY.clear()
    out = [f"Seeds: {', '.join(r.name for r in runs)}. Seeds are the replicates: paired "
           "differences are taken within each seed, then averaged over seeds (t-interval, "
           "n = seeds); MDE is the smallest difference detectable at 80% power.", ""]
    out += ["## Ranking consistency (Kendall-based C of M_t's rewards against M_(t-1)'s)", "",
            "| method | C, iteration 1 (M1 vs M0) | C, iteration 2 (M2 vs M1) |", "|---|---|---|"]
    methods = ["srlm", "cream-no-rc", "cream", "scir", "cream-c1-first"]
    for m in methods:
        cs = [across_seeds([float(np.nanmean(list(consistency(r, m, t).values()) or [np.nan]))
                            for r in runs]) for t in (1, 2)]
        out.append(f"| {m} | {cell(cs[0], test=False)} | {cell(cs[1], test=False)} |")
    out += ["", "Levels: mean over seeds of each seed's mean C (t-interval over seeds).", "",
            "| comparison (iteration 2, paired by prompt within each seed) | mean of per-seed "
            "differences in C, t over seeds | per seed |", "|---|---|---|"]
    for a, b in (("cream", "srlm"), ("cream", "cream-no-rc"), ("cream-c1-first", "cream-no-rc"),
                 ("cream-c1-first", "cream")):
        d = seed_means(pooled_consistency(runs, a, 2), pooled_consistency(runs, b, 2))
        e = across_seeds(d)
        out.append(f"| {a} - {b} | {cell(e, label=f'C {a} - {b}')} | {per_seed_text(d)} |")

    methods_all = ["srlm", "oracle", *methods[1:]]
    for norm in (False, True):
        name = "acc_norm (acc for SIQA)" if norm else "acc, the report's main metric"
        out += benchmarks(runs, methods_all, norm, name)
    out += pool_accuracy(runs, methods_all)
    out += ["", "## Which consistency measure carries information about label correctness",
            "", "AUC of each measure's C for \"the pair's label is right\", over prompts whose "
            "chosen and rejected responses differ in correctness (implicit-reward methods; "
            "iteration 1 once per seed, iteration 2 for cream-no-rc, cream and scir; the cases "
            "of all seeds pooled, so these are within-seed statistics pooled over seeds). "
            "DeLong's interval handles the tied C levels; two measures are compared with "
            "DeLong's paired test on the same cases.", "",
            "| measure | AUC (DeLong) |", "|---|---|"]
    cases = [c for r in runs for c in label_cases(r, "cream", 1)]
    # cream-c1-first's iteration 2 repeats cream-no-rc's (the same M2): counted once.
    cases += [c for r in runs for m in ("cream-no-rc", "cream", "scir")
              for c in label_cases(r, m, 2)]
    right = np.array([c[0] for c in cases])
    scores = {m: [c[1][m] for c in cases] for m in ("kendall", "spearman", "toporder")}
    for measure, values in scores.items():
        out.append(f"| {measure} | {cell(delong_auc(values, right), label=f'AUC {measure}')} |")
    for a, b in (("kendall", "spearman"), ("kendall", "toporder")):
        gap = compare_aucs(scores[a], scores[b], right)
        out.append(f"| {b} - {a} | {cell(gap, label=f'AUC {b} - {a}')} |")

    out += ["", "## SCIR: agreement of the two internal rewards (share of pairs)", "",
            "| iteration | agreement across seeds (logit-scale t-interval) | ", "|---|---|"]
    rates = {}
    for t in (1, 2):
        rows = [jsonl(r / "scir" / f"iter{t}" / "internal-consistency.jsonl")[0] for r in runs]
        counts = [(round(x["rate"] * x["n"]), int(x["n"])) for x in rows]
        rates[t] = [k / n if n else np.nan for k, n in counts]
        e = proportion_across_seeds(counts)
        out.append(f"| {t} (M{t}) | {cell(e, 'pct', test=False)}; {e.reason} |")
    d = [b - a for a, b in zip(rates[1], rates[2], strict=True)]
    out.append(f"| 2 - 1 (per seed, t over seeds) | "
               f"{cell(across_seeds(d), 'points', label='SCIR agreement 2 - 1')} |")
    out += family()
    return "\n".join(out) + "\n"


def family() -> list[str]:
    """Every tested comparison above with its Holm-adjusted p over the family."""
    adjusted = holm([e.p_value for _, e in FAMILY])
    out = ["", f"## The family of comparisons: {len(FAMILY)} tests, Holm-adjusted", "",
           "| comparison | p | Holm-adjusted p |", "|---|---|---|"]
    out += [f"| {label} | {e.p_value:.3g} | {p:.3g} |"
            for (label, e), p in zip(FAMILY, adjusted, strict=True)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("top", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = claims(args.top)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
