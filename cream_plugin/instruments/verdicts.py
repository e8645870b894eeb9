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
    tests: int = 1    # tests behind the sentence (a task's grouped comparisons: several)


def _mde_text(e: Estimate, scale: str) -> str:
    if math.isnan(e.mde):
        return ""
    size = f"{100 * e.mde:.1f} points" if scale in ("pct", "points") else f"{e.mde:.3g}"
    return f"; no difference larger than {size} was detectable (80% power at this n)"


def tested(e: Estimate, chance: float, what: str, figure: str,
            verdicts: tuple[str, str, str], topic: str = "", scale: str = "num") -> Finding:
    """A sentence "what: figure: verdict" with verdict (above chance, below chance, neither),
    decided in :func:`findings` once every p-value of the family is known (Holm)."""
    if not e.defined:
        return Finding(UNMEASURED, f"{what}: {e.reason or 'no data'}.")
    sig = significant(e, chance)
    if sig is None:
        return Finding(FACT, f"{what}: {figure}.", e.n)
    return Finding(PENDING, f"{what}: {figure}", e.n, p=e.p_value, topic=topic, short=what,
                   verdicts=verdicts, ci_significant=sig, above=e.value > chance,
                   mde=_mde_text(e, scale))


def decide(found: list[Finding]) -> list[Finding]:
    """Holm-adjust the family of tested figures' p-values, then write each verdict."""
    pending = [f for f in found if f.kind == PENDING]
    adjusted = iter(holm([f.p for f in pending]))
    family = sum(1 for f in pending if not math.isnan(f.p))
    out = []
    for f in found:
        if f.kind != PENDING:
            out.append(f)
            continue
        p_adj = next(adjusted)
        sig = bool(f.ci_significant) if math.isnan(p_adj) else p_adj < ALPHA
        note = ""
        if not math.isnan(p_adj) and f.p < ALPHA <= p_adj:
            note = (f" (p < 0.05 alone, Holm-adjusted p = {p_adj:.3g} over the family of "
                    f"{family} tests)")
        verdict = (f.verdicts[0] if f.above else f.verdicts[1]) if sig else f.verdicts[2]
        text = f"{f.text}: {verdict}{note}{'' if sig else f.mde}."
        out.append(dataclasses.replace(f, kind=SIGNIFICANT if sig else NOT_SIGNIFICANT,
                                       text=text, short=f"{f.short}: {verdict}",
                                       direction=(1 if f.above else -1) if sig else 0))
    return out


def group_quiet(found: list[Finding]) -> list[Finding]:
    """Not-significant sentences of one group (a task's pairwise comparisons) as one count."""
    out = [f for f in found if not (f.group and f.kind == NOT_SIGNIFICANT)]
    quiet: dict[str, list[Finding]] = {}
    for f in found:
        if f.group and f.kind == NOT_SIGNIFICANT:
            quiet.setdefault(f.group, []).append(f)
    for group, rows in quiet.items():
        ns = [f.n for f in rows]
        n = f"{min(ns)}" if min(ns) == max(ns) else f"{min(ns)} to {max(ns)}"
        mdes = sorted({f.mde for f in rows if f.mde})
        mde = (f"; differences smaller than the detectable {_mde_range(mdes)} points could not "
               "be seen" if mdes else "")
        out.append(Finding(NOT_SIGNIFICANT,
                           f"{group}: {len(rows)} paired comparison(s) between models show no "
                           f"significant difference (within-seed, n = {n} items each{mde}; see "
                           "the table).", min(ns), p=min(f.p for f in rows), topic="outcome",
                           tests=len(rows)))
    return out


def _mde_range(texts: list[str]) -> str:
    values = sorted(float(t.split("larger than ")[1].split(" ")[0]) for t in texts)
    return f"{values[0]:.1f}" if values[0] == values[-1] else f"{values[0]:.1f} to {values[-1]:.1f}"


_METHOD_HEAD = re.compile(r"^([A-Za-z0-9_.-]+), (iteration \d+.*)$", re.S)


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
        out.append(dataclasses.replace(first[item], text=f"{names}, {item[1]}",
                                       short=f"{names}, {short.group(2)}" if short
                                       else first[item].short))
    return out


def family_size(found: list[Finding]) -> int:
    """How many figures were tested with a p-value (Holm's family)."""
    return sum(f.tests for f in found if f.kind in (SIGNIFICANT, NOT_SIGNIFICANT)
               and not math.isnan(f.p))
