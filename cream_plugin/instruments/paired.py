"""Two models scored on the same benchmark items: paired tests that a small eval can carry.

Per-item scores come from lm-eval's ``log_samples`` (one dict per document and filter with
``doc_id`` and the metric values) and are matched by document id, so the comparison uses the
item-to-item correlation that an unpaired "A ± stderr vs B ± stderr" reading throws away. For 0/1
scores: McNemar's exact test (a two-sided binomial test on the discordant items) with its exact
conditional interval. For other scores: the paired t interval and the Wilcoxon signed-rank test.
A seeded percentile bootstrap stays available for statistics with no closed form.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from cream_plugin.errors import DataError
from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.intervals import LEVEL, binomial_test, t_interval
from cream_plugin.instruments.power import mde_mean, mde_paired_binary

N_BOOT = 10_000
_CHUNK = 1000


def _sample_rows(source: str | os.PathLike[str] | Sequence[Mapping[str, Any]]
                 ) -> tuple[str, list[Mapping[str, Any]]]:
    if not isinstance(source, str | os.PathLike):
        return "samples", list(source)
    where = str(source)
    rows = []
    try:
        lines = Path(source).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{where}: cannot read lm-eval samples ({exc.strerror})") from None
    for lineno, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise DataError(f"{where}:{lineno}: not valid JSON") from None
    return where, rows


def item_scores(source: str | os.PathLike[str] | Sequence[Mapping[str, Any]], metric: str,
                filter_name: str | None = None) -> dict[Any, float]:
    """doc_id -> score of ``metric`` from lm-eval ``log_samples`` (a list or a samples .jsonl).

    A task with several filters (GSM8K: strict-match, flexible-extract) needs ``filter_name``.
    """
    where, rows = _sample_rows(source)
    filters = sorted({str(r.get("filter", "none")) for r in rows if isinstance(r, Mapping)})
    if filter_name is None and len(filters) > 1:
        raise DataError(f"{where}: several filters ({', '.join(filters)}); pass filter_name")
    scores: dict[Any, float] = {}
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping) or "doc_id" not in row:
            raise DataError(f"{where}: row {i} has no doc_id (not lm-eval log_samples output)")
        if filter_name is not None and str(row.get("filter", "none")) != filter_name:
            continue
        if metric not in row:
            raise DataError(f"{where}: row {i} has no metric {metric!r}")
        doc = row["doc_id"]
        if doc in scores:
            raise DataError(f"{where}: doc_id {doc!r} occurs twice")
        try:
            scores[doc] = float(row[metric])
        except (TypeError, ValueError):
            raise DataError(f"{where}: row {i}: {metric} = {row[metric]!r} is not a number"
                            ) from None
    if not scores:
        raise DataError(f"{where}: no rows" + (f" with filter {filter_name!r}" if filter_name
                                               else ""))
    return scores


def _pair(a: object, b: object) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise DataError(f"paired scores have shapes {x.shape} and {y.shape}; expected equal 1-D")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


@dataclass(frozen=True)
class McNemar:
    """Discordant counts, McNemar's exact two-sided p-value and the difference b - a.

    ``difference`` is (b_only - a_only) / n with the exact conditional interval: the
    Clopper-Pearson interval of pi = b_only / (a_only + b_only), the share of discordant items
    that favour b (the interval that inverts this exact test), mapped to m / n * (2 pi - 1) for
    the m discordant items. With no discordant item it has no interval (the reason says so);
    its ``mde`` is McNemar's minimum detectable difference at the observed discordance.
    """

    a_only: int   # items model a gets right and model b wrong
    b_only: int   # items b gets right and a wrong
    n: int        # items compared
    p_value: float
    difference: Estimate | None = None


def mcnemar_difference(a_only: int, b_only: int, n: int, level: float = LEVEL) -> Estimate:
    """b - a over ``n`` paired 0/1 items from the discordant counts (see :class:`McNemar`)."""
    method = f"McNemar exact test, exact conditional {level:.0%} interval"
    if n <= 0:
        return undefined("no item scored for both models", method=method)
    m = a_only + b_only
    p = 1.0 if m == 0 else binomial_test(min(a_only, b_only), m, 0.5)
    mde = mde_paired_binary(n, m / n)
    value = (b_only - a_only) / n
    if m == 0:
        return Estimate(0.0, n=n, p_value=1.0, method=method, mde=mde,
                        reason=f"the models agree on all {n} items: no interval")
    alpha = 1 - level
    low = 0.0 if b_only == 0 else float(stats.beta.ppf(alpha / 2, b_only, a_only + 1))
    high = 1.0 if a_only == 0 else float(stats.beta.ppf(1 - alpha / 2, b_only + 1, a_only))
    scale = m / n
    reason = (f"only {m} discordant item{'s' if m > 1 else ''}: the interval is conditional "
              "on them" if m < 3 else "")
    return Estimate(value, scale * (2 * low - 1), scale * (2 * high - 1), n=n, p_value=p,
                    method=method, reason=reason, mde=mde)


def mcnemar_exact(a: object, b: object) -> McNemar:
    """McNemar's exact test for paired 0/1 scores (p = 1 when no item is discordant)."""
    x, y = _pair(a, b)
    if not (np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all()):
        raise DataError("McNemar's test needs 0/1 scores; use paired_continuous for others")
    a_only = int(((x == 1) & (y == 0)).sum())
    b_only = int(((x == 0) & (y == 1)).sum())
    diff = mcnemar_difference(a_only, b_only, int(x.size))
    return McNemar(a_only, b_only, int(x.size), diff.p_value, diff)


def paired_continuous(a: object, b: object, level: float = LEVEL) -> Estimate:
    """Mean of b - a over paired continuous scores: Student's t interval, and the two-sided
    Wilcoxon signed-rank p-value (exact for n <= 50 without ties or zeros, else the normal
    approximation with tie correction), which does not assume normal differences."""
    x, y = _pair(a, b)
    d = y - x
    est = t_interval(d, level=level, what="paired items")
    if d.size < 2:
        return est
    sd = float(d.std(ddof=1))
    if not np.any(d != 0):
        p = 1.0
    else:
        p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return Estimate(est.value, est.low, est.high, n=est.n, p_value=p,
                    method=f"paired t {level:.0%} interval, Wilcoxon signed-rank test",
                    reason=est.reason, mde=mde_mean(sd, int(d.size)))


def paired_bootstrap(a: object, b: object, *, seed: int = 0, n_boot: int = N_BOOT,
                     level: float = LEVEL) -> Estimate:
    """Mean of b - a over items with a seeded percentile bootstrap interval (items resampled)."""
    x, y = _pair(a, b)
    d = y - x
    n = int(d.size)
    method = f"paired bootstrap {level:.0%} ({n_boot} resamples, seed {seed})"
    if n == 0:
        return undefined("no item scored for both models", method=method)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, _CHUNK):
        size = min(_CHUNK, n_boot - start)
        means[start:start + size] = d[rng.integers(0, n, size=(size, n))].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return Estimate(float(d.mean()), float(low), float(high), n=n, method=method)


@dataclass(frozen=True)
class PairedComparison:
    """Model b against model a on the items both were scored on (difference = b - a)."""

    mean_a: float
    mean_b: float
    difference: Estimate          # McNemar (0/1 scores) or paired t / Wilcoxon (others)
    mcnemar: McNemar | None
    only_a: int                   # items scored for a but not b (left out)
    only_b: int


def compare_items(scores_a: Mapping[Any, float], scores_b: Mapping[Any, float]
                  ) -> PairedComparison:
    """Match two doc_id -> score maps; McNemar for 0/1 scores, else :func:`paired_continuous`."""
    common = [k for k in scores_a if k in scores_b]
    x = np.array([scores_a[k] for k in common], dtype=np.float64)
    y = np.array([scores_b[k] for k in common], dtype=np.float64)
    binary = bool(common) and bool(np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all())
    test = mcnemar_exact(x, y) if binary else None
    diff = (test.difference if test is not None and test.difference is not None
            else paired_continuous(x, y))
    return PairedComparison(
        mean_a=float(x.mean()) if x.size else math.nan,
        mean_b=float(y.mean()) if y.size else math.nan,
        difference=diff, mcnemar=test,
        only_a=len(scores_a) - len(common), only_b=len(scores_b) - len(common))
