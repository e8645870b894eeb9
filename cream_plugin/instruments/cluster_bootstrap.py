"""Bootstrap over prompts (clusters) for statistics that pool many within-prompt units.

Responses, tokens and response pairs of one prompt are not independent: they share the prompt
and the model's mood on it. The unit of replication is therefore the prompt: every bootstrap
replicate draws P prompts with replacement and recomputes the statistic from everything those
prompts contain. The statistics here are ratios of per-prompt sums (a per-token mean, an AUC
over pairs), so one replicate is ``sum(num[idx]) / sum(den[idx])`` and all replicates are
computed at once from a (B, P) index matrix. Seeded: the same inputs give the same interval.
"""

from __future__ import annotations

import numpy as np

from cream_plugin.errors import DataError
from cream_plugin.instruments.estimate import Estimate, as_numbers, undefined
from cream_plugin.instruments.intervals import LEVEL

N_BOOT = 10_000
_MAX_CELLS = 20_000_000  # index entries per block: bounds memory whatever B x P


def cluster_indices(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_clusters) cluster indices drawn with replacement (seeded)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_clusters, size=(n_boot, n_clusters))


def _per_cluster(values: object, name: str) -> np.ndarray:
    array = as_numbers(values, name, 1, "(P,) (one number per prompt)")
    if not np.isfinite(array).all():
        raise DataError(f"{name}: entry {int(np.argmin(np.isfinite(array)))} is not finite")
    return array


def bootstrap_ratios(num: np.ndarray, den: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """The ratio sum(num)/sum(den) of every replicate (NaN where a replicate's den is 0)."""
    p = num.size
    out = np.empty(n_boot, dtype=np.float64)
    rng = np.random.default_rng(seed)
    block = max(1, _MAX_CELLS // max(p, 1))
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        idx = rng.integers(0, p, size=(size, p))
        top, bottom = num[idx].sum(axis=1), den[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + size] = np.where(bottom > 0, top / bottom, np.nan)
    return out


def cluster_ratio(num: object, den: object, *, level: float = LEVEL, n_boot: int = N_BOOT,
                  seed: int = 0, unit: str = "units", n: int | None = None) -> Estimate:
    """sum(num) / sum(den) over prompts, with a percentile interval from resampling prompts.

    ``num`` and ``den`` hold one number per prompt (e.g. a prompt's summed KL and its token
    count, or its correctly ordered pairs and its pairs). Prompts with ``den == 0`` carry no
    unit and are dropped first. ``n`` (default: sum of den) is the number of ``unit`` the
    estimate rests on; the reason names the number of prompts, the replication unit.
    """
    top = _per_cluster(num, "num")
    bottom = _per_cluster(den, "den")
    if top.shape != bottom.shape:
        raise DataError(f"num has {top.size} prompts but den has {bottom.size}")
    if (bottom < 0).any():
        raise DataError("den: expected counts >= 0")
    method = f"prompt-clustered bootstrap {level:.0%} ({n_boot} replicates)"
    keep = bottom > 0
    top, bottom = top[keep], bottom[keep]
    count = round(float(bottom.sum())) if n is None else n
    if not keep.any():
        return undefined(f"no {unit}", method=method)
    value = float(top.sum() / bottom.sum())
    prompts = int(keep.sum())
    if prompts < 2:
        return Estimate(value, n=count, method=method, reason=f"one prompt ({unit}): no interval")
    reps = bootstrap_ratios(top, bottom, n_boot, seed)
    low, high = np.nanquantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(value, float(low), float(high), n=count, method=method,
                    reason=f"{count} {unit} in {prompts} prompts")
