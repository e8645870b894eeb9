"""One verdict per claim of the CREAM and SCIR papers (and the study's length finding), each
with its test, n and minimum detectable effect; the verdict's words follow from the numbers.

A claim holds when its Holm-adjusted p (over the document's whole family of tests) is below
0.05 with the estimate in the claimed direction, is reversed when significant the other way,
and is otherwise "not detectable at MDE x": a true effect smaller than x would usually be
missed at this n. An estimate at least as large as that single-test MDE whose Holm p is still
above 0.05 is "not significant after Holm" instead (the family asks for more than one test at
5%). A claim whose estimate is undefined "cannot be tested" and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.fmt import interval, value
from cream_plugin.instruments.seeds import across_seeds
from studies.cells import Family, mde_text, paired_seed_means, per_seed_text
from studies.folder import COT_TASKS, LOGLIK_TASKS, consistency_rows, read_jsonl
from studies.items import compare
from studies.table_benchmarks import open_tasks
from studies.table_consistency import measure_cases
from studies.table_controls import lengths

ALPHA = 0.05


@dataclass(frozen=True)
class Claim:
    key: str
    source: str
    text: str
    direction: int          # +1: the claim says the estimate is above 0; -1: below
    scale: str              # "points" (proportions), "num"
    test: str
    n: str
    estimate: Estimate
    detail: str = ""
    same_as: str = ""       # the label of the same test in a table (one entry in the family)

    @property
    def label(self) -> str:
        return self.same_as or f"claim {self.key}: {self.text}"


def verdict(c: Claim, p_holm: float) -> str:
    e = c.estimate
    if not e.defined:
        return f"cannot be tested: {e.reason or 'not measured in this folder'}"
    if not np.isfinite(e.p_value):
        return f"cannot be tested: {e.reason or 'no test applies'}"
    if np.isfinite(p_holm) and p_holm < ALPHA:
        agrees = np.sign(e.value) == c.direction
        return (f"holds (Holm p = {p_holm:.2g})" if agrees
                else f"reversed, significantly (Holm p = {p_holm:.2g})")
    side = ("in the claimed direction" if np.sign(e.value) == c.direction
            else "against the claimed direction" if e.value != 0 else "zero")
    held = f"Holm p = {p_holm:.2g}"
    if np.isfinite(e.mde) and abs(e.value) >= e.mde:
        # the MDE is a single test's at 5%; Holm over the family asks for more than that
        return (f"not significant after Holm (estimate {side}, larger than the single-test MDE "
                f"{mde_text(e, c.scale)}, unadjusted p = {e.p_value:.2g}; {held})")
    return f"not detectable at MDE {mde_text(e, c.scale)} (estimate {side}; {held})"


def seeds_and_prompts(a: list[dict[str, float]], b: list[dict[str, float]]) -> str:
    """"n seeds; prompts per seed ..." for per-prompt comparisons of a and b."""
    counts = [sum(1 for k in x if k in y and np.isfinite(x[k]) and np.isfinite(y[k]))
              for x, y in zip(a, b, strict=True)]
    counts = [c for c in counts if c]
    return f"{len(counts)} seeds; prompts per seed {', '.join(map(str, counts)) or 'n/a'}"


def consistency_claim(runs: list[Path], a: str, b: str, t: int) -> tuple[Estimate, str, str]:
    ca, cb = ([{k: r.get("C", np.nan) for k, r in consistency_rows(x, m, t).items()}
               for x in runs] for m in (a, b))
    d = paired_seed_means(ca, cb)
    e = across_seeds(d) if d else undefined(f"no prompt with C for both {a} and {b} "
                                            f"at iteration {t}")
    return e, seeds_and_prompts(ca, cb), f"per seed {per_seed_text(d)}"


def items_claim(runs: list[Path], a: tuple[str, int], b: tuple[str, int], tasks: tuple[str, ...],
                metric: str) -> tuple[Estimate, str, str]:
    c = compare(runs, a, b, tasks, metric)
    e = c.across if c.per_seed else undefined(f"no item scored for both {a[0]} M{a[1]} and "
                                              f"{b[0]} M{b[1]} ({metric})")
    n = f"{len(c.per_seed)} seeds; items per seed {', '.join(map(str, c.items)) or 'n/a'}"
    return e, n, f"per seed {c.seeds_text()}"


def scir_agreement(runs: list[Path]) -> tuple[Estimate, str, str]:
    d, pairs = [], []
    for r in runs:
        rates = [read_jsonl(r / "scir" / f"iter{t}" / "internal-consistency.jsonl")
                 for t in (1, 2)]
        if all(rates) and all(x[0].get("n") for x in rates):
            d.append(float(rates[1][0]["rate"]) - float(rates[0][0]["rate"]))
            pairs.append(f"{rates[0][0]['n']}/{rates[1][0]['n']}")
    e = across_seeds(d) if d else undefined("no scir internal-consistency rows")
    n = f"{len(d)} seeds; pairs per seed (iteration 1/2) {', '.join(pairs) or 'n/a'}"
    return e, n, f"per seed {per_seed_text(d, 'points')}"


def auc_gap(runs: list[Path], other: str) -> tuple[Estimate, str, str]:
    from cream_plugin.instruments.roc import compare_aucs

    cases = [c for seed in measure_cases(runs) for c in seed]
    if not cases:
        return (undefined("no pair whose chosen and rejected responses differ in correctness"),
                "n/a", "")
    right = [c[0] for c in cases]
    e = compare_aucs([c[1][other] for c in cases], [c[1]["kendall"] for c in cases], right)
    return (e, f"{len(runs)} seeds pooled: {len(cases)} labels ({sum(right)} right)",
            "Kendall's AUC minus the other's")


def gather(runs: list[Path]) -> list[Claim]:
    """Every claim's estimate (the tests are listed in the claim)."""
    by_prompt = "paired by prompt within each seed, per-seed means, t over seeds"
    mcn = "McNemar exact per seed on the four benchmarks' items, t over the per-seed differences"
    claims: list[Claim] = []

    def add(key: str, source: str, text: str, direction: int, scale: str, test: str,
            make: Callable[[], tuple], same_as: str = "") -> None:
        got = make()
        e, rest = got[0], got[1:]
        n = rest[0] if len(rest) == 2 else f"{e.n} seeds"
        detail = rest[-1] if rest else ""
        claims.append(Claim(key, source, text, direction, scale, test, n, e, detail, same_as))

    add("1", "CREAM", "CREAM's ranking consistency (M2 vs M1) above SRLM's", +1, "num", by_prompt,
        lambda: consistency_claim(runs, "cream", "srlm", 2))
    add("2", "CREAM", "CREAM's ranking consistency (M2 vs M1) above CREAM w/o RC's", +1, "num",
        by_prompt, lambda: consistency_claim(runs, "cream", "cream-no-rc", 2))
    add("2b", "CREAM", "CREAM's ranking consistency (M3 vs M2) above CREAM w/o RC's", +1, "num",
        by_prompt, lambda: consistency_claim(runs, "cream", "cream-no-rc", 3))
    for proto, tasks, metric in (("generative", COT_TASKS, "exact_match"),
                                 ("log-likelihood", LOGLIK_TASKS, "acc")):
        for other, t in (("cream-no-rc", 3), ("srlm", 3), ("sft", 1)):
            add(f"3 {proto} vs {other}", "CREAM",
                f"CREAM M3 above {other} M{t} ({proto} protocol, {metric})", +1, "points", mcn,
                partial(items_claim, runs, (other, t), ("cream", 3), tasks, metric))
        add(f"4 {proto}", "CREAM", f"SRLM degrades from M2 to M3 ({proto} protocol, {metric})",
            -1, "points", mcn,
            partial(items_claim, runs, ("srlm", 2), ("srlm", 3), tasks, metric))
        add(f"7 {proto}", "SCIR", f"SCIR M3 above CREAM w/o RC M3 ({proto} protocol, {metric})",
            +1, "points", mcn,
            partial(items_claim, runs, ("cream-no-rc", 3), ("scir", 3), tasks, metric))
    for other in ("spearman", "toporder"):
        add(f"5 {other}", "CREAM", f"Kendall's C more informative than {other}'s (AUC Kendall "
            f"- {other})", +1, "num", "DeLong paired AUC test, seeds pooled (a proxy: see the "
            "measure table)", partial(auc_gap, runs, other),
            same_as=f"AUC kendall - {other} (seeds pooled)")
    add("6", "SCIR", "The two internal rewards agree more after training (iteration 2 - 1)", +1,
        "points", "per-seed agreement rates, t over seeds", lambda: scir_agreement(runs))
    add("L", "study", "CREAM's M2 answers longer than CREAM w/o RC's (the length finding)", +1,
        "num", by_prompt, lambda: length_claim(runs), same_as="length M2: cream - cream-no-rc")
    tasks = tuple(open_tasks(runs))
    add("L-open", "study", "Short answers cost open-question accuracy: CREAM M3 above CREAM "
        "w/o RC M3 (contains_gold)", +1, "points",
        "McNemar exact per seed on the open questions, t over seeds",
        lambda: items_claim(runs, ("cream-no-rc", 3), ("cream", 3), tasks, "contains_gold")
        if tasks else (undefined("no cream_open_* item rows"), "n/a", ""),
        same_as="open contains_gold M3: cream - cream-no-rc")
    return claims


def length_claim(runs: list[Path]) -> tuple[Estimate, str, str]:
    a, b = lengths(runs, "cream", 2), lengths(runs, "cream-no-rc", 2)
    d = paired_seed_means(a, b)
    e = across_seeds(d) if d else undefined("no iteration-2 samples of both methods")
    return e, seeds_and_prompts(a, b), f"per seed {per_seed_text(d)} characters"


def register(claims: list[Claim], family: Family) -> None:
    for c in claims:
        if c.estimate.defined:
            family.add(c.label, c.estimate)


def verdict_table(claims: list[Claim], family: Family) -> list[str]:
    adjusted = family.adjusted()
    out = ["## One verdict per claim", "",
           f"Holm over the family of {len(family.tests)} tests listed at the end; a verdict "
           "holds at Holm p < 0.05 in the claimed direction (reversed: significant the other "
           "way); otherwise it states the MDE (80% power, two-sided 5%, for one test: an "
           "estimate beyond it that Holm does not pass is \"not significant after Holm\").", "",
           "| # | claim (paper) | estimate (95% interval) | test | n | verdict |",
           "|---|---|---|---|---|---|"]
    for c in claims:
        e = c.estimate
        p_text = f"p = {e.p_value:.3g}" if np.isfinite(e.p_value) else "no p-value"
        est = (f"{value(e, c.scale)} ({interval(e, c.scale)}; {p_text}); {c.detail}"
               if e.defined else "n/a")
        p = adjusted.get(c.label, float("nan"))
        out.append(f"| {c.key} | {c.text} ({c.source}) | {est} | {c.test} | {c.n} | "
                   f"{verdict(c, p)} |")
    return out
