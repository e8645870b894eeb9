"""The report's first section: the instruments' findings as plain sentences, deterministically.

Every figure becomes one sentence with its interval, n and test, sorted into *significant*
(Holm-adjusted p < 0.05 over the report's family of tests, or where no test applies a 95%
interval that excludes the chance value), *not significant* (with the smallest difference its n
could detect), *not measured* (with the reason) and *other figures* (descriptive), followed by
caveats. The verdict rules live in :mod:`cream_plugin.instruments.verdicts`. The same Evidence
always gives the same text.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from cream_plugin.instruments import fmt
from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.evidence import (
    BiasRow,
    ComparisonRow,
    Evidence,
    IdenticalRow,
    InformativenessRow,
    MovementRow,
    PoolAccuracyRow,
    RewardQualityRow,
    SamePromptPoolRow,
    SeedComparisonRow,
    SeedRow,
    is_headline,
    last_iterations,
)
from cream_plugin.instruments.verdicts import (
    FACT,
    HEADINGS,
    NOT_SIGNIFICANT,
    SIGNIFICANT,
    SMALL_N,
    UNMEASURED,
    Finding,
    decide,
    deduplicate,
    family_size,
    group_quiet,
    tested,
)


def _p(e: Estimate) -> str:
    return "" if math.isnan(e.p_value) else f"; {fmt.p_clause(e.p_value)}"


def _pool(rows: list[PoolAccuracyRow]) -> list[Finding]:
    """Each iteration's pool accuracy as a fact: iterations sample different prompts, so their
    change is tested only on the same prompts (:func:`_same_prompt_pool`)."""
    out = []
    for r in rows:
        e = r.accuracy
        what = f"{r.method}, iteration {r.iteration}: pool accuracy"
        out.append(_fact(e, what, f"{what} {fmt.pct(e.value)} (95% CI "
                                  f"{fmt.interval(e, 'pct')}, n = {e.n} responses)."))
    return out


def _fact(e: Estimate, what: str, text: str) -> Finding:
    """A descriptive figure's sentence ``text``, or why ``what`` was not measured."""
    if not e.defined:
        return Finding(UNMEASURED, f"{what}: {e.reason or 'no data'}.")
    return Finding(FACT, text, e.n)


def _same_prompt_pool(rows: list[SamePromptPoolRow]) -> list[Finding]:
    out = []
    for r in rows:
        d = r.difference
        t = r.iteration
        what = (f"{r.method}: pool accuracy of M{t + 1} vs M{t} on the same prompts "
                f"(iteration {t + 1}'s)")
        figure = (f"{fmt.pct(r.new.value)} vs {fmt.pct(r.old.value)}, mean per-prompt change "
                  f"{fmt.points(d.value)} points (95% CI {fmt.interval(d, 'points')}, "
                  f"prompt-clustered bootstrap, n = {d.n} prompts)")
        out.append(tested(d, 0.0, what, figure,
                           ("the policy got more answers right", "the policy got fewer answers "
                            "right", "no significant change"), "outcome", "points"))
    return out


def _movement(rows: list[MovementRow]) -> list[Finding]:
    out = []
    for r in rows:
        m = r.movement.current()
        what = f"{r.method}, iteration {r.iteration}: how far the policy moved"
        if m.kl_forward.defined:
            kl, back = m.kl_forward, m.kl_reverse
            figure = (f"exact per-token KL(M_(t+1) || M_t) = {fmt.num(kl.value, 4)} nats (95% CI "
                      f"{fmt.interval(kl, 'num', 4)}, prompt-clustered bootstrap, n = {kl.n} "
                      f"tokens of {m.kl_on or 'sampled responses'}); reverse KL "
                      f"{fmt.num(back.value, 4)} ({fmt.interval(back, 'num', 4)})")
            # An exact KL is > 0 for any change at all: a size to read, not a test against 0.
            out.append(Finding(FACT, f"{what}: {figure}.", kl.n))
        else:
            mc = m.mc_forward if m.mc_forward.defined else m.mc_reverse
            figure = (f"exact KL not measured ({m.kl_forward.reason}); MC log-ratio at the "
                      f"sampling temperature {fmt.num(mc.value, 4)} nats per token, a biased "
                      "figure that is not a KL and whose sign means nothing")
            delta = m.mean_abs_delta
            figure += (f"; mean |delta log-prob| {fmt.num(delta.value, 4)} nats per token"
                       if delta.defined else "")
            out.append(Finding(FACT, f"{what}: {figure}.", mc.n))
        out.extend(_length(r))
        if r.margins.defined or r.accuracies.defined:
            out.append(Finding(FACT, f"{r.method}, iteration {r.iteration}: mean DPO margin "
                                     f"{fmt.num(r.margins.value)} and reward accuracy "
                                     f"{fmt.pct(r.accuracies.value)} over "
                                     f"{max(r.margins.n, r.accuracies.n)} logged steps."))
    return out


COLLAPSE_RATIO = 0.5
"""M_(t+1)'s responses shorter than this share of M_t's are called out as a collapse."""


def _length(r: MovementRow) -> list[Finding]:
    """Mean response length of M_t's and M_(t+1)'s samples; a halving is called out, since
    the implicit reward prefers short responses and the policy may learn to answer bare."""
    old, new = r.movement.length_old, r.movement.length_new
    if not (old.defined and new.defined):
        return []
    text = (f"{r.method}, iteration {r.iteration}: responses average "
            f"{fmt.num(old.value, 1)} tokens from M_t ({fmt.interval(old, 'num', 1)}) and "
            f"{fmt.num(new.value, 1)} from M_(t+1) ({fmt.interval(new, 'num', 1)}), "
            "on each iteration's own prompts")
    if old.value > 0 and new.value < COLLAPSE_RATIO * old.value and new.high < old.low:
        return [Finding(SIGNIFICANT, text + ": M_(t+1) answers in less than half the length "
                        "(intervals apart); check its samples for bare answers before trusting "
                        "pool accuracy.", new.n, topic="watch",
                        short=f"{r.method}, iteration {r.iteration}: the trained model answers "
                              "in less than half the length")]
    return [Finding(FACT, text + ".", new.n)]


def _reward_quality(rows: list[RewardQualityRow]) -> list[Finding]:
    out = []
    for r in rows:
        e = r.accuracy
        what = f"{r.method}, iteration {r.iteration}: label accuracy of reward {r.reward}"
        figure = (f"{fmt.pct(e.value)} of {e.n} pairs whose responses differ in correctness "
                  f"(95% CI {fmt.interval(e, 'pct')}{_p(e)}; chance 50%)")
        out.append(tested(e, 0.5, what, figure,
                           ("better than chance", "worse than chance: its labels are mostly "
                            "reversed", "not distinguishable from chance"),
                           "labels" if r.reward != "random" else "", "pct"))
        a = r.auc
        if a.defined:
            figure = (f"{fmt.num(a.value)} over {a.n} within-prompt pairs of a correct and a "
                      f"wrong response (95% CI {fmt.interval(a)}, prompt-clustered bootstrap; "
                      "chance 0.5)")
            out.append(tested(a, 0.5, f"{r.method}, iteration {r.iteration}: within-prompt "
                                      f"AUC of reward {r.reward}", figure,
                              ("ranks correct responses above wrong ones",
                               "ranks wrong responses above correct ones",
                               "not distinguishable from chance")))
    return out


def _informativeness(rows: list[InformativenessRow]) -> list[Finding]:
    out = []
    for r in rows:
        head = f"{r.method}, iteration {r.iteration}"
        e = r.auc
        figure = (f"{fmt.num(e.value)} (95% CI {fmt.interval(e)}{_p(e)}; {e.reason}; "
                  "chance 0.5)")
        out.append(tested(e, 0.5, f"{head}: AUC of C for a correct label", figure,
                           ("C carries information about which labels are right",
                            "C is higher on wrong labels than on right ones",
                            "C is not distinguishable from no information")))
        d = r.difference
        figure = (f"{fmt.pct(r.soft.value)} vs {fmt.pct(r.hard.value)}, {fmt.points(d.value)} "
                  f"points (95% CI {fmt.interval(d, 'points')}{_p(d)}, n = {d.n} pairs)")
        out.append(tested(d, 0.0, f"{head}: soft-label vs hard-label accuracy", figure,
                           ("the soft labels are more accurate", "the soft labels are less "
                            "accurate", "no significant difference"), scale="points"))
    return out


def _biases(rows: list[BiasRow]) -> list[Finding]:
    out = []
    for r in rows:
        head = f"{r.method}, iteration {r.iteration}: reward {r.reward}"
        for e, what, verdicts in (
            (r.length, "vs response length", ("longer responses score higher",
                                               "shorter responses score higher",
                                               "no significant length correlation")),
            (r.duplicates, "vs duplicate count", ("repeated responses score higher",
                                                  "repeated responses score lower",
                                                  "no significant duplicate correlation")),
        ):
            figure = (f"within-prompt Spearman {fmt.num(e.value)} (95% CI {fmt.interval(e)}, "
                      f"n = {e.n} responses)")
            out.append(tested(e, 0.0, f"{head} {what}", figure, verdicts, "watch"))
    return out


def _identical(rows: list[IdenticalRow]) -> list[Finding]:
    out = []
    for r in rows:
        e = r.share
        what = f"{r.method}, iteration {r.iteration}: prompts with all responses identical"
        out.append(_fact(e, what, f"{what}: {fmt.pct(e.value)} of {e.n} (they give no pair)."))
    return out


def _comparisons(rows: list[ComparisonRow]) -> list[Finding]:
    """One sentence per comparison; :func:`findings` counts the not-significant ones per task
    (all pairs of models can be dozens of rows: the table has them all). Only the headline
    comparisons (:func:`is_headline`) join Holm's family; the others are exploratory."""
    out = []
    last = last_iterations(m for r in rows for m in (r.model_a, r.model_b))
    for r in rows:
        c = r.comparison
        d = c.difference
        scale = "points" if c.mcnemar is not None else "num"
        test = (f"McNemar {fmt.p_clause(c.mcnemar.p_value)}" if c.mcnemar is not None
                else f"Wilcoxon {fmt.p_clause(d.p_value)}")
        unit = " points" if scale == "points" else ""
        before = fmt.pct(c.mean_a) if scale == "points" else fmt.num(c.mean_a)
        after = fmt.pct(c.mean_b) if scale == "points" else fmt.num(c.mean_b)
        what = f"{r.task} ({r.metric}): {r.model_b} vs {r.model_a}"
        figure = (f"{fmt.value(d, scale)}{unit} ({r.model_a} {before}, {r.model_b} {after}; 95% CI "
                  f"{fmt.interval(d, scale) if d.has_interval else d.reason or fmt.DASH}; "
                  f"{test}; within-seed, n = {d.n} items)")
        found = tested(d, 0.0, what, figure,
                        (f"{r.model_b} scores higher", f"{r.model_b} scores lower",
                         "no significant difference"), "outcome", scale)
        out.append(dataclasses.replace(found, group=f"{r.task} ({r.metric})",
                                       in_family=is_headline(r.model_a, r.model_b, last)))
    return out


def _seed_comparisons(rows: list[SeedComparisonRow]) -> list[Finding]:
    out = []
    for r in rows:
        e = r.across
        binary = all("McNemar" in v.estimate.method for v in r.per_seed)
        scale = "points" if binary else "num"
        unit = " points" if binary else ""
        each = ", ".join(f"{fmt.value(v.estimate, scale)}" for v in r.per_seed)
        what = f"{r.task} ({r.metric}): {r.model_b} vs {r.model_a} across {e.n} seeds"
        figure = (f"mean of the per-seed differences {fmt.value(e, scale)}{unit} (95% t-CI over "
                  f"seeds {fmt.interval(e, scale)}{_p(e)}; per seed {each})")
        out.append(tested(e, 0.0, what, figure,
                           (f"{r.model_b} scores higher", f"{r.model_b} scores lower",
                            "no significant difference across seeds"), "outcome", scale))
    return out


def _seeds(rows: list[SeedRow]) -> list[Finding]:
    out = []
    for r in rows:
        e = r.estimate
        what = f"{r.label}, {r.quantity}" + (f" across {e.n} seeds" if e.n else "")
        name = "logit-scale" if "logit" in e.method else "t"
        figure = (f"{fmt.num(e.value)} (95% {name} CI over seeds {fmt.interval(e)}{_p(e)})"
                  if e.has_interval else f"{fmt.num(e.value)} (no interval: {e.reason})")
        if r.chance is None:
            out.append(Finding(UNMEASURED, f"{what}: {e.reason}.") if not e.defined
                       else Finding(FACT, f"{what}: {figure}.", e.n))
        else:
            out.append(tested(e, r.chance, what, f"{figure}; reference {r.chance:g}",
                              ("above the reference", "below the reference",
                               "not distinguishable from the reference"),
                              "labels" if r.quantity.startswith("label accuracy")
                              and not r.quantity.endswith("random") else "",
                              "pct" if "logit" in e.method else "num"))
    return out


_SECTIONS: tuple[tuple[str, Callable[[Evidence], list[Finding]]], ...] = (
    ("pool_accuracy", lambda ev: _pool(ev.pool_accuracy)),
    ("same_prompt_pool", lambda ev: _same_prompt_pool(ev.same_prompt_pool)),
    ("movement", lambda ev: _movement(ev.movement)),
    ("reward_quality", lambda ev: _reward_quality(ev.reward_quality)),
    ("informativeness", lambda ev: _informativeness(ev.informativeness)),
    ("biases", lambda ev: _biases(ev.biases)),
    ("identical", lambda ev: _identical(ev.identical)),
    ("comparisons", lambda ev: _comparisons(ev.comparisons)),
    ("seeds", lambda ev: _seeds(ev.seeds)),
    ("seed_comparisons", lambda ev: _seed_comparisons(ev.seed_comparisons)),
)


def findings(evidence: Evidence) -> list[Finding]:
    """Every sentence of the summary with its category, in section order (verdicts after Holm's
    adjustment over all tested figures; duplicates across methods merged)."""
    out: list[Finding] = []
    for _, build in _SECTIONS:
        out += build(evidence)
    return group_quiet(decide(deduplicate(out)))


def _caveats(evidence: Evidence, found: list[Finding]) -> list[str]:
    tested = [f for f in found if f.kind in (SIGNIFICANT, NOT_SIGNIFICANT)]
    notes = []
    family = family_size(found)
    if family:
        notes.append(
            f"{family} figures have a p-value; they form the report's family of comparisons, "
            "and each is called significant only if its Holm-adjusted p is below 0.05, so the "
            "chance of any false positive among them is at most 5%.")
    small = [f for f in tested if 0 < f.n < SMALL_N]
    if small:
        notes.append(f"{len(small)} tested figure(s) rest on fewer than {SMALL_N} items "
                     "(pairs, responses or benchmark items): read them as indications only.")
    if evidence.pool_accuracy:
        notes.append("Pool accuracy treats the N responses to a prompt as independent; "
                     "they are not, so its intervals are, if anything, too narrow.")
    if evidence.reward_quality or evidence.informativeness:
        notes.append("Label accuracy counts only pairs whose two responses differ in "
                     "correctness; chance is 50%, and so is chance for the AUC (0.5).")
    return notes


def render_summary(evidence: Evidence, heading: str = "## Summary") -> str:
    """The plain-language summary section as Markdown."""
    found = findings(evidence)
    parts = [heading, ""]
    if not found:
        parts += ["No instrument produced a figure for this run.", ""]
        return "\n".join(parts)
    family = family_size(found)
    tests = f"{family} tests" if family else "tests (none has a p-value here)"
    parts += [f"Significant means a Holm-adjusted p < 0.05 over the report's {tests}, or, "
              "where no test applies, a 95% interval that excludes the chance value; n is "
              "given with every figure, and a figure that is not significant states the "
              "smallest difference its n could detect.", ""]
    for kind in (SIGNIFICANT, NOT_SIGNIFICANT, UNMEASURED, FACT):
        sentences = [f.text for f in found if f.kind == kind]
        if sentences:
            parts += [f"**{HEADINGS[kind]}**", "", *[f"- {s}" for s in sentences], ""]
    notes = _caveats(evidence, found)
    if notes:
        parts += ["**Caveats**", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(parts)
