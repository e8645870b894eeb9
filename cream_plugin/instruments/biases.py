"""Known biases of a reward: length, duplicated responses, and prompts with nothing to rank.

Correlations are *within prompt*: a prompt that invites long answers or that the model answers
the same way every time must not make a reward look length- or duplicate-biased. Each response's
reward and covariate are ranked among the responses of its own prompt (average ranks for ties),
each prompt's ranks are centred on their mean, and the pooled correlation of the centred ranks
over all prompts is reported: sum(x·y) / sqrt(sum(x²)·sum(y²)). With one prompt this is exactly
Spearman's rho. Its interval is a percentile bootstrap over prompts (prompts are the independent
units). The mean of the per-prompt Spearman coefficients is available as a second view.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import stats

from cream_plugin.errors import DataError
from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.intervals import LEVEL, proportion, t_interval
from cream_plugin.instruments.power import mde_correlation
from cream_plugin.instruments.reward_quality import as_table

N_BOOT = 2000


def _centred_rank_sums(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """Per prompt (sum xy, sum xx, sum yy) of centred within-prompt ranks; responses used."""
    sums = np.zeros((x.shape[0], 3))
    used = 0
    for i in range(x.shape[0]):
        keep = np.isfinite(x[i]) & np.isfinite(y[i])
        if keep.sum() < 2:
            continue
        rx = stats.rankdata(x[i][keep])
        ry = stats.rankdata(y[i][keep])
        rx -= rx.mean()
        ry -= ry.mean()
        sums[i] = (rx @ ry, rx @ rx, ry @ ry)
        used += int(keep.sum())
    return sums, used


def within_prompt_spearman(rewards: object, covariate: object, *, seed: int = 0,
                           n_boot: int = N_BOOT, level: float = LEVEL) -> Estimate:
    """Pooled within-prompt Spearman correlation of a reward with a per-response covariate.

    NaN rewards or covariates drop that response; a prompt with fewer than two left drops out.
    ``n`` is the number of responses used; the interval is a seeded bootstrap over prompts.
    """
    x = as_table(rewards, "rewards")
    y = as_table(covariate, "covariate", x.shape)
    sums, used = _centred_rank_sums(x, y)
    method = f"pooled within-prompt ranks, prompt bootstrap {level:.0%}"
    informative = (sums[:, 1] > 0) & (sums[:, 2] > 0)
    prompts = int(informative.sum())
    if prompts == 0:
        return undefined("no prompt where both the reward and the covariate vary", n=used,
                         method=method)
    sums = sums[informative]
    rho = float(sums[:, 0].sum() / np.sqrt(sums[:, 1].sum() * sums[:, 2].sum()))
    if prompts < 2:
        return Estimate(rho, n=used, method=method, reason="one prompt: no interval")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(prompts, np.full(prompts, 1 / prompts), size=n_boot)
    boot_sums = weights @ sums
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = boot_sums[:, 0] / np.sqrt(boot_sums[:, 1] * boot_sums[:, 2])
    low, high = np.nanpercentile(boot, [50 * (1 - level), 50 * (1 + level)])
    # Centring within each prompt costs one degree of freedom per prompt (Fisher's z MDE).
    return Estimate(rho, float(low), float(high), n=used, method=method,
                    reason=f"{prompts} prompts", mde=mde_correlation(used - prompts))


def mean_prompt_spearman(rewards: object, covariate: object) -> Estimate:
    """Mean over prompts of Spearman's rho (prompts where both vary), with a t interval."""
    x = as_table(rewards, "rewards")
    y = as_table(covariate, "covariate", x.shape)
    rhos = []
    for i in range(x.shape[0]):
        keep = np.isfinite(x[i]) & np.isfinite(y[i])
        if keep.sum() < 2 or np.ptp(x[i][keep]) == 0 or np.ptp(y[i][keep]) == 0:
            continue
        rhos.append(float(stats.spearmanr(x[i][keep], y[i][keep]).statistic))
    return t_interval(rhos, what="prompts where both vary")


def _texts(responses: Sequence[Sequence[str]]) -> list[list[str]]:
    rows = [[str(t).strip() for t in row] for row in responses]
    if rows and any(len(r) != len(rows[0]) for r in rows):
        raise DataError("responses: every prompt needs the same number of responses")
    return rows


def duplicate_counts(responses: Sequence[Sequence[str]]) -> np.ndarray:
    """(P, N): how many responses of the same prompt have this text (1 = unique).

    Texts are compared after stripping surrounding whitespace, otherwise exactly.
    """
    rows = _texts(responses)
    n = len(rows[0]) if rows else 0
    out = np.zeros((len(rows), n))
    for i, row in enumerate(rows):
        counts = Counter(row)
        out[i] = [counts[t] for t in row]
    return out


def all_identical_share(responses: Sequence[Sequence[str]]) -> Estimate:
    """Share of prompts (with at least two responses) whose responses are all the same text.

    Such a prompt yields no preference pair under any reward that scores equal texts equally.
    """
    rows = [r for r in _texts(responses) if len(r) >= 2]
    same = sum(1 for r in rows if len(set(r)) == 1)
    return proportion(same, len(rows), what="prompts with two or more responses")
