"""Table cells and the family of tested comparisons shared by the study's tables.

Seeds are the replicates: a comparison is paired within each seed (same prompt or same
benchmark item), and the per-seed differences are summarised by their mean with a t-interval
over seeds (n = seeds, MDE at 80% power). Every tested cell joins one family, adjusted by Holm
at the end, and the claims' verdicts read the adjusted p-values from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.fmt import interval, value
from cream_plugin.instruments.intervals import t_interval
from cream_plugin.instruments.multiple import holm


@dataclass
class Family:
    """Every tested comparison of the document, in the order the tables name them."""

    tests: list[tuple[str, Estimate]] = field(default_factory=list)

    def add(self, label: str, e: Estimate) -> None:
        if np.isfinite(e.p_value) and label not in dict(self.tests):
            self.tests.append((label, e))

    def adjusted(self) -> dict[str, float]:
        """label -> Holm-adjusted p over the whole family."""
        ps = holm([e.p_value for _, e in self.tests])
        return {label: p for (label, _), p in zip(self.tests, ps, strict=True)}

    def table(self) -> list[str]:
        adjusted = self.adjusted()
        out = ["", f"## The family of comparisons: {len(self.tests)} tests, Holm-adjusted", "",
               "| comparison | estimate | p | Holm-adjusted p |", "|---|---|---|---|"]
        out += [f"| {label} | {value(e)} | {e.p_value:.3g} | {adjusted[label]:.3g} |"
                for label, e in self.tests]
        return out


def mde_text(e: Estimate, scale: str = "num") -> str:
    if not np.isfinite(e.mde):
        return "n/a"
    return f"{100 * e.mde:.1f} points" if scale in ("points", "pct") else f"{e.mde:.3g}"


def missing(e: Estimate) -> str:
    """Why a figure is n/a: a t-interval over no seed means the folder has no such data."""
    return "n/a (not in this folder)" if e.reason in ("", "no seeds") else f"n/a ({e.reason})"


def within(e: Estimate, low: float, high: float = float("inf")) -> Estimate:
    """``e`` with its interval clipped to the range the quantity can take (a t-interval over
    two seeds reaches below 0% or below 0 characters; the true value cannot)."""
    if not e.has_interval:
        return e
    return replace(e, low=max(e.low, low), high=min(e.high, high))


def level(e: Estimate, scale: str = "num", digits: int | None = None,
          floor: float | None = None) -> str:
    """A level (no test): value (95% interval). A proportion ("pct") is clipped to [0, 1], and
    a quantity with a ``floor`` (a length, a KL) to [floor, inf)."""
    if not e.defined:
        return missing(e)
    if not e.has_interval:
        return value(e, scale, digits)
    if scale == "pct":
        e = within(e, 0.0, 1.0)
    elif floor is not None:
        e = within(e, floor)
    return f"{value(e, scale, digits)} ({interval(e, scale, digits)})"


def tested(e: Estimate, scale: str = "num", family: Family | None = None, label: str = "") -> str:
    """A tested difference: value (95% interval; p; n; MDE); joins ``family`` under ``label``."""
    if not e.defined:
        return missing(e)
    if family is not None and label:
        family.add(label, e)
    p = f"; p = {e.p_value:.3g}" if np.isfinite(e.p_value) else f"; no test: {e.reason}"
    return f"{value(e, scale)} ({interval(e, scale)}{p}; n = {e.n}; MDE {mde_text(e, scale)})"


def paired_seed_means(a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]]
                      ) -> list[float]:
    """Per seed, the mean of a - b over the keys both have (finite); seeds with none dropped."""
    out = []
    for sa, sb in zip(a, b, strict=True):
        d = [sa[k] - sb[k] for k in sa if k in sb and np.isfinite(sa[k]) and np.isfinite(sb[k])]
        if d:
            out.append(float(np.mean(d)))
    return out


def seed_level(per_seed: Sequence[Mapping[str, float] | np.ndarray]) -> Estimate:
    """Mean over seeds of each seed's mean (t-interval over seeds; a level, so no test). A
    seed's values come as a mapping (prompt -> value) or an array; NaN is left out."""
    rows = [np.asarray(list(s.values()) if isinstance(s, Mapping) else s, dtype=float)
            for s in per_seed]
    means = [float(np.nanmean(r)) for r in rows if np.isfinite(r).any()]
    return t_interval(means, what="seeds")


def per_seed_text(values: Sequence[float], scale: str = "num") -> str:
    if not values:
        return "n/a"
    return ", ".join(f"{100 * v:+.1f}" if scale == "points" else f"{v:+.3g}" for v in values)
