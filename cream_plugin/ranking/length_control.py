"""Meta-Rewarding's length control for the actor pairs (Wu et al. 2024, section 2.1).

A self-rewarding judge tends to prefer longer responses, and training on its best-vs-worst
pairs makes the actor's answers grow every iteration. The paper's remedy works on the pair
choice only: with S_max and S_min the highest and lowest (averaged) judge scores of a prompt's
responses and a quality-tier parameter rho, every response scoring at least
``(1 - rho) * S_max + rho * S_min`` is of top quality and the *shortest* of them is chosen;
every response scoring at most ``(1 - rho) * S_min + rho * S_max`` is of bottom quality and the
*longest* of them is rejected. ``rho = 0`` is SRLM's best vs worst with ties broken by length;
a larger rho trades score for brevity. Both tiers stay disjoint because rho < 0.5, so the chosen
response always scores strictly above the rejected one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cream_plugin.errors import ConfigError

DEFAULT_RHO = 0.2
"""Our choice (docs/meta-rewarding.md): the paper sets rho per iteration to keep the response
length from growing; 0 gives SRLM's best vs worst with the length tie-break only."""


def check_rho(rho: float) -> float:
    """rho as a float in [0, 0.5): at 0.5 the two tiers meet and chosen could equal rejected."""
    value = float(rho)
    if not 0.0 <= value < 0.5:
        raise ConfigError(f"meta-rewarding length_control_rho: expected a number in [0, 0.5), "
                          f"got {rho!r}")
    return value


@dataclass(frozen=True)
class ActorChoice:
    """The chosen and rejected response of one prompt (indices into its responses)."""

    chosen: int
    rejected: int


def select_actor_pair(scores: Sequence[float], lengths: Sequence[int],
                      rho: float = DEFAULT_RHO) -> ActorChoice | None:
    """The length-controlled pair of one prompt, or None when no two finite scores differ.

    ``scores[k]`` is response k's averaged judge score (NaN when no judgement scored it, left
    out); ``lengths[k]`` its length. Among equally short top-tier responses the higher score
    wins, then the earlier one; among equally long bottom-tier ones the lower score, then the
    earlier one.
    """
    rho = check_rho(rho)
    values = np.asarray(scores, dtype=np.float64)
    if len(lengths) != values.size:
        raise ValueError(f"{values.size} scores but {len(lengths)} lengths")
    valid = [k for k in range(values.size) if np.isfinite(values[k])]
    if len(valid) < 2:
        return None
    s_max = max(values[k] for k in valid)
    s_min = min(values[k] for k in valid)
    if s_max <= s_min:
        return None
    top_floor = (1.0 - rho) * s_max + rho * s_min
    bottom_ceiling = (1.0 - rho) * s_min + rho * s_max
    top = [k for k in valid if values[k] >= top_floor]
    bottom = [k for k in valid if values[k] <= bottom_ceiling]
    chosen = min(top, key=lambda k: (lengths[k], -values[k], k))
    rejected = min(bottom, key=lambda k: (-lengths[k], values[k], k))
    return ActorChoice(chosen=chosen, rejected=rejected)
