"""Holm's step-down adjustment over a family of p-values (Holm 1979).

A report that tests dozens of figures finds a few "significant" ones by chance; Holm's adjusted
p-values keep the chance of any false positive in the family at 5% without assuming the tests
are independent, and are never larger than Bonferroni's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values in the input order; NaN entries stay NaN and are not counted in
    the family."""
    p = np.asarray(p_values, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(p))
    out = [math.nan] * p.size
    m = keep.size
    order = keep[np.argsort(p[keep], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p[index])))
        out[int(index)] = running
    return out
