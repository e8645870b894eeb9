"""How the summary decides a verdict: each tested figure becomes a pending sentence, the family's
p-values are Holm-adjusted together, then each sentence gets its verdict (or the smallest
difference its n could detect); sentences that differ only in the method are merged and a
task's quiet pairwise comparisons are counted in one sentence."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.multiple import holm

ALPHA = 0.05
SMALL_N = 30
SIGNIFICANT, NOT_SIGNIFICANT, UNMEASURED, FACT = "sig", "not", "unmeasured", "fact"
HEADINGS = {
    SIGNIFICANT: "Significant",
    NOT_SIGNIFICANT: "Not significant",
    UNMEASURED: "Not measured",
    FACT: "Other figures",
}


def significant(e: Estimate, chance: float) -> bool | None:
    """p < 0.05 when a test p-value exists, else whether the interval excludes ``chance``."""
    if not e.defined:
        return None
    if not math.isnan(e.p_value):
        return e.p_value < ALPHA
    if e.has_interval:
        return e.excludes(chance)
    return None


PENDING = "pending"


@dataclass(frozen=True)
class Finding:
    """One summary sentence. ``topic`` ("outcome": a model scores higher or lower; "watch": a
    warning sign) and ``direction`` (+1 higher, -1 lower, 0 neither) feed the bottom line."""

    kind: str
    text: str
    n: int = 0
    p: float = math.nan
    topic: str = ""
    direction: int = 0
    verdicts: tuple[str, str, str] = ("", "", "")
    ci_significant: bool | None = None
    above: bool = False
    mde: str = ""
    group: str = ""
    short: str = ""   # "what: verdict", for the bottom line
    in_family: bool = True  # counted in Holm's family (False: an exploratory comparison)
    tests: int = 1    # tests behind the sentence (a task's grouped comparisons: several)


def _mde_text(e: Estimate, scale: str) -> str:
    if math.isnan(e.mde):
        return ""
    share = scale in ("pct", "points")
    if share and e.mde >= 1:
        return "; at this n no difference inside the possible range was detectable (80% power)"
    size = f"{100 * e.mde:.1f} points" if share else f"{e.mde:.3g}"
    return f"; no difference larger than {size} was detectable (80% power at this n)"


def tested(e: Estimate, chance: float, what: str, figure: str,
            verdicts: tuple[str, str, str], topic: str = "", scale: str = "num") -> Finding:
    """A sentence "what: figure: verdict" with verdict (above chance, below chance, neither),
    decided in :func:`findings` once every p-value of the family is known (Holm)."""
    if not e.defined:
        return Finding(UNMEASURED, f"{what}: {e.reason or 'no data'}.")
    sig = significant(e, chance)
    if sig is None:
        return Finding(FACT, f"{what}: {figure}.", e.n, topic=topic, short=what)
    return Finding(PENDING, f"{what}: {figure}", e.n, p=e.p_value, topic=topic, short=what,
                   verdicts=verdicts, ci_significant=sig, above=e.value > chance,
                   mde=_mde_text(e, scale))


def decide(found: list[Finding]) -> list[Finding]:
    """Holm-adjust the family of tested figures' p-values, then write each verdict."""
    pending = [f for f in found if f.kind == PENDING and f.in_family]
    adjusted = dict(zip(map(id, pending), holm([f.p for f in pending]), strict=True))
    family = sum(1 for f in pending if not math.isnan(f.p))
    out = []
    for f in found:
        if f.kind != PENDING:
            out.append(f)
            continue
        p_adj = adjusted.get(id(f), f.p)
        sig = bool(f.ci_significant) if math.isnan(p_adj) else p_adj < ALPHA
        note = "" if f.in_family else " (exploratory: outside the Holm family, unadjusted p)"
        if f.in_family and not math.isnan(p_adj) and f.p < ALPHA <= p_adj:
            note = (f" (p < 0.05 alone, Holm-adjusted p = {p_adj:.3g} over the family of "
                    f"{family} tests)")
        verdict = (f.verdicts[0] if f.above else f.verdicts[1]) if sig else f.verdicts[2]
        text = f"{f.text}: {verdict}{note}{'' if sig else f.mde}."
        out.append(dataclasses.replace(f, kind=SIGNIFICANT if sig else NOT_SIGNIFICANT,
                                       text=text, short=f"{f.short}: {verdict}",
                                       direction=(1 if f.above else -1) if sig else 0))
    return out


def group_quiet(found: list[Finding]) -> list[Finding]:
    """Not-significant sentences of one group (a task's pairwise comparisons) as one count,
    headline and exploratory comparisons apart."""
    out = [f for f in found if not (f.group and f.kind == NOT_SIGNIFICANT)]
    quiet: dict[tuple[str, bool], list[Finding]] = {}
    for f in found:
        if f.group and f.kind == NOT_SIGNIFICANT:
            quiet.setdefault((f.group, f.in_family), []).append(f)
    for (group, headline), rows in quiet.items():
        ns = [f.n for f in rows]
        n = f"{min(ns)}" if min(ns) == max(ns) else f"{min(ns)} to {max(ns)}"
        mdes = [f.mde for f in rows if f.mde]
        mde = f"; no difference larger than {_mde_range(mdes)} was detectable" if mdes else ""
        kind = "headline" if headline else "exploratory (outside the Holm family)"
        out.append(Finding(NOT_SIGNIFICANT,
                           f"{group}: {len(rows)} {kind} paired comparison(s) between models show "
                           f"no significant difference (within-seed, n = {n} items each{mde}; "
                           "see the table).", min(ns), p=min(f.p for f in rows), topic="outcome",
                           tests=len(rows), in_family=headline))
    return out


def _mde_range(texts: list[str]) -> str:
    """"4.1 to 9.8 points" from the summary's MDE clauses."""
    sizes = [t.split("larger than ")[1].split(" was")[0] for t in texts]
    values = sorted(float(x.split(" ")[0]) for x in sizes)
    unit = " points" if "points" in sizes[0] else ""
    low, high = f"{values[0]:g}", f"{values[-1]:g}"
    return f"{low}{unit}" if low == high else f"{low} to {high}{unit}"


_METHOD_HEAD = re.compile(r"^([A-Za-z0-9_.-]+)((?:, iteration \d+)?[:,] .*)$", re.S)


def deduplicate(found: list[Finding]) -> list[Finding]:
    """Sentences that differ only in the method (methods sharing an iteration, e.g. cream and
    cream-no-rc's common iteration 1) become one sentence naming every method."""
    merged: dict[tuple[str, str], list[str]] = {}
    order: list[tuple[str, str] | Finding] = []
    for f in found:
        match = _METHOD_HEAD.match(f.text)
        if not match:
            order.append(f)
            continue
        key = (f.kind, match.group(2))
        if key not in merged:
            merged[key] = []
            order.append(key)
        merged[key].append(match.group(1))
    first = {(f.kind, m.group(2)): f for f in found if (m := _METHOD_HEAD.match(f.text))}
    out = []
    for item in order:
        if isinstance(item, Finding):
            out.append(item)
            continue
        methods = merged[item]
        names = methods[0] if len(methods) == 1 else (", ".join(methods[:-1]) + " and "
                                                      + methods[-1])
        short = _METHOD_HEAD.match(first[item].short)
        out.append(dataclasses.replace(first[item], text=f"{names}{item[1]}",
                                       short=f"{names}{short.group(2)}" if short
                                       else first[item].short))
    return out


def family_size(found: list[Finding]) -> int:
    """How many figures were tested with a p-value (Holm's family)."""
    return sum(f.tests for f in found if f.kind in (SIGNIFICANT, NOT_SIGNIFICANT)
               and f.in_family and not math.isnan(f.p))
