"""Number formatting shared by the summary and the tables, so both print a figure the same way."""

from __future__ import annotations

import math

from cream_plugin.instruments.estimate import Estimate

DASH = "–"


def num(x: float, digits: int = 3) -> str:
    return DASH if math.isnan(x) else f"{x:.{digits}f}"


def signed(x: float, digits: int = 3) -> str:
    return DASH if math.isnan(x) else f"{x:+.{digits}f}"


def pct(x: float, digits: int = 1) -> str:
    return DASH if math.isnan(x) else f"{100 * x:.{digits}f}%"


def points(x: float, digits: int = 1) -> str:
    """A difference of proportions in percentage points, signed."""
    return DASH if math.isnan(x) else f"{100 * x:+.{digits}f}"


def p_value(p: float) -> str:
    """A p-value for a table cell: three decimals, or "< 0.001"."""
    if math.isnan(p):
        return DASH
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_clause(p: float) -> str:
    """A p-value for a sentence: "p = 0.031" or "p < 0.001"."""
    text = p_value(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _digits(scale: str, digits: int | None) -> int:
    return digits if digits is not None else (1 if scale in ("pct", "points") else 3)


def interval(e: Estimate, scale: str = "num", digits: int | None = None) -> str:
    """``low–high`` in the given scale ("num", "pct" or "points"), or a dash.

    Percentages and points get one decimal and plain numbers three unless ``digits`` is given.
    """
    if not e.has_interval:
        return DASH
    digits = _digits(scale, digits)
    if scale == "pct":
        return f"{pct(e.low, digits)}–{pct(e.high, digits)}"
    if scale == "points":
        return f"{points(e.low, digits)} to {points(e.high, digits)}"
    return f"{num(e.low, digits)} to {num(e.high, digits)}"


def value(e: Estimate, scale: str = "num", digits: int | None = None) -> str:
    digits = _digits(scale, digits)
    if scale == "pct":
        return pct(e.value, digits)
    if scale == "points":
        return points(e.value, digits)
    return num(e.value, digits)
