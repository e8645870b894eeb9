"""Ranking consistency between two reward tables of the same prompts and responses (CREAM §3).

Each metric maps two (P, N) tables to a (P,) statistic, vectorised over prompts:

* ``kendall``: Kendall tau-b per row (ties handled), equal to ``scipy.stats.kendalltau``;
* ``spearman``: Spearman rho per row (average ranks for ties), equal to ``scipy.stats.spearmanr``;
* ``toporder``: 1.0 when both tables pick the same best and the same worst response, else 0.0
  (with ties, "the best" is the set of responses sharing the maximum; the sets must be equal).

Like scipy, a raw metric is NaN on a row that holds a NaN or is constant in either table (no
ranking to compare). :func:`consistency_rate` turns the statistic into the rate C in [0, 1]
and gives such undefined rows a documented value instead of a NaN that poisons the mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]

UNDEFINED_RATE = 0.5
"""C given to a prompt whose consistency cannot be measured: no evidence either way."""

_PAIR_BUDGET = 4_000_000  # rows x pairs per chunk, bounds the temporary arrays (~32 MB each)


def _tables(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"expected two (P, N) tables of the same shape, got {a.shape} and {b.shape}")
    return a, b


def _undefined_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows with a NaN in either table, or constant in either table (or N < 2)."""
    nan = np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1)
    if a.shape[1] < 2:
        return np.ones(a.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        const = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)
    return nan | const


def kendall(a: Any, b: Any) -> np.ndarray:
    """Kendall tau-b of each row of ``a`` against the same row of ``b``: (P, N), (P, N) -> (P,)."""
    a, b = _tables(a, b)
    p, n = a.shape
    out = np.full(p, np.nan)
    if p == 0 or n < 2:
        return out
    i, j = np.triu_indices(n, k=1)
    total = len(i)
    step = max(1, _PAIR_BUDGET // total)
    for lo in range(0, p, step):  # chunks of rows bound memory; each chunk is vectorised
        sa = np.sign(a[lo:lo + step, i] - a[lo:lo + step, j])
        sb = np.sign(b[lo:lo + step, i] - b[lo:lo + step, j])
        concordance = (sa * sb).sum(axis=1)
        untied_a = total - (sa == 0).sum(axis=1)
        untied_b = total - (sb == 0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo:lo + step] = concordance / np.sqrt(untied_a * untied_b)
    out[_undefined_rows(a, b)] = np.nan
    return np.clip(out, -1.0, 1.0)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N along each row, ties given their average rank (scipy's ``method='average'``).

    rank = 1 + #(values below) + #(other equal values) / 2, from an (rows, N, N) comparison in
    chunks of rows: cheaper than sorting for the small N of a reward table.
    """
    p, n = x.shape
    out = np.empty((p, n), dtype=np.float64)
    step = max(1, _PAIR_BUDGET // (n * n))
    for lo in range(0, p, step):
        block = x[lo:lo + step]
        below = (block[:, None, :] < block[:, :, None]).sum(axis=2)
        equal = (block[:, None, :] == block[:, :, None]).sum(axis=2)
        out[lo:lo + step] = 1.0 + below + (equal - 1) / 2.0
    return out


def spearman(a: Any, b: Any) -> np.ndarray:
    """Spearman rho of each row of ``a`` against the same row of ``b``: (P, N), (P, N) -> (P,)."""
    a, b = _tables(a, b)
    p, n = a.shape
    out = np.full(p, np.nan)
    if p == 0 or n < 2:
        return out
    undefined = _undefined_rows(a, b)
    # NaNs are swapped for zeros before ranking; those rows are reset to NaN below.
    ra = _average_ranks(np.where(np.isnan(a), 0.0, a))
    rb = _average_ranks(np.where(np.isnan(b), 0.0, b))
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (ra * rb).sum(axis=1) / np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    out[undefined] = np.nan
    return np.clip(out, -1.0, 1.0)


def toporder(a: Any, b: Any) -> np.ndarray:
    """1.0 where both tables agree on the best and on the worst response of a row, else 0.0."""
    a, b = _tables(a, b)
    p, n = a.shape
    if p == 0 or n < 2:
        return np.full(p, np.nan)
    undefined = _undefined_rows(a, b)
    with np.errstate(invalid="ignore"):
        best_a = a == np.max(a, axis=1, keepdims=True)
        best_b = b == np.max(b, axis=1, keepdims=True)
        worst_a = a == np.min(a, axis=1, keepdims=True)
        worst_b = b == np.min(b, axis=1, keepdims=True)
    same = (best_a == best_b).all(axis=1) & (worst_a == worst_b).all(axis=1)
    out = same.astype(np.float64)
    out[undefined] = np.nan
    return out


BUILTIN_METRICS: dict[str, Metric] = {"kendall": kendall, "spearman": spearman,
                                      "toporder": toporder}

SIGNED = "signed"
"""Scale of a statistic in [-1, 1]: the rate is (stat + 1) / 2."""
UNIT = "unit"
"""Scale of a statistic already in [0, 1]: the rate is the statistic."""


@dataclass
class ConsistencyResult:
    """Per-prompt consistency rates C and their data-set mean and standard deviation.

    ``mean`` and ``std`` are taken over the prompts whose C is defined (``defined``); the others
    hold ``undefined_value`` (0.5 by default). With no defined prompt, mean is that value, std 0.
    """

    per_prompt: np.ndarray
    mean: float
    std: float
    metric: str
    statistic: np.ndarray
    defined: np.ndarray

    @property
    def num_undefined(self) -> int:
        return int((~self.defined).sum())

    def as_mapping(self, prompt_ids: Sequence[str]) -> dict[str, float]:
        """``prompt_id -> C``: the explicit join that
        :func:`cream_plugin.ranking.pairs.build_pairs` takes."""
        if len(prompt_ids) != len(self.per_prompt):
            raise ValueError(f"{len(prompt_ids)} prompt ids for {len(self.per_prompt)} rates")
        return {str(pid): float(c) for pid, c in zip(prompt_ids, self.per_prompt, strict=True)}

    def summary(self) -> dict[str, Any]:
        return {"metric": self.metric, "mean": self.mean, "std": self.std,
                "prompts": len(self.per_prompt), "undefined": self.num_undefined}


def _resolve(metric: str | Metric) -> tuple[str, Metric, str]:
    if callable(metric):
        return getattr(metric, "__name__", "custom"), metric, SIGNED
    if metric in BUILTIN_METRICS:
        return metric, BUILTIN_METRICS[metric], UNIT if metric == "toporder" else SIGNED
    from cream_plugin.plugins.registry import get_component

    comp = get_component("consistency_metric", metric)
    scale = str(comp.extra.get("scale", SIGNED))
    return metric, comp.obj, scale


def consistency_rate(
    a: Any,
    b: Any,
    metric: str | Metric = "kendall",
    *,
    undefined_value: float = UNDEFINED_RATE,
) -> ConsistencyResult:
    """Consistency rate C per prompt between reward tables ``a`` (current) and ``b`` (previous).

    C = (stat + 1) / 2 for kendall and spearman, C = stat for toporder; a metric registered by a
    plugin declares its scale with ``register(name, fn, scale="unit" | "signed")``. A prompt with
    a NaN reward or all-equal rewards in either table gets ``undefined_value``.
    """
    a, b = _tables(a, b)
    name, fn, scale = _resolve(metric)
    stat = np.asarray(fn(a, b), dtype=np.float64)
    if stat.shape != (a.shape[0],):
        raise ValueError(f"metric {name!r} returned shape {stat.shape}, expected ({a.shape[0]},)")
    rate = (stat + 1.0) / 2.0 if scale == SIGNED else stat.copy()
    defined = np.isfinite(rate)
    rate = np.where(defined, np.clip(rate, 0.0, 1.0), undefined_value)
    if defined.any():
        mean, std = float(rate[defined].mean()), float(rate[defined].std())
    else:
        mean, std = float(undefined_value), 0.0
    return ConsistencyResult(rate, mean, std, name, stat, defined)


def join_tables(
    ids_a: Sequence[str],
    table_a: Any,
    ids_b: Sequence[str],
    table_b: Any,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Align two reward tables by prompt id, never by position: the ids both have, in a's order."""
    index_b: Mapping[str, int] = {str(pid): k for k, pid in enumerate(ids_b)}
    ids = [str(pid) for pid in ids_a if str(pid) in index_b]
    rows_a = [k for k, pid in enumerate(ids_a) if str(pid) in index_b]
    rows_b = [index_b[pid] for pid in ids]
    a = np.asarray(table_a, dtype=np.float64)[rows_a]
    b = np.asarray(table_b, dtype=np.float64)[rows_b]
    return ids, a, b
