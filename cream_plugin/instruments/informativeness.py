"""Is the consistency rate C informative? CREAM's mechanism claim, tested against gold answers.

CREAM trusts a pair's label in proportion to C. If C is informative, labels with high C are
right more often than labels with low C: label accuracy rises across C bins, the AUC of C for
"label correct" is above 0.5, and the soft labels C·[chosen correct] + (1-C)·[rejected correct]
are more accurate than the hard labels. All three use the discordant best-vs-worst pairs of the
reward that built the pairs (see :mod:`cream_plugin.instruments.reward_quality`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cream_plugin.errors import DataError
from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.intervals import LEVEL, proportion, t_interval
from cream_plugin.instruments.power import mde_mean
from cream_plugin.instruments.reward_quality import pair_labels
from cream_plugin.instruments.roc import delong_auc

DEFAULT_BINS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def _consistency(c: object, p: int) -> np.ndarray:
    values = np.asarray(c, dtype=np.float64)
    if values.shape != (p,):
        raise DataError(f"C has shape {values.shape}; expected ({p},), one value per prompt")
    finite = values[np.isfinite(values)]
    if ((finite < 0) | (finite > 1)).any():
        raise DataError("C: expected values in [0, 1]")
    return values


def _discordant_with_c(rewards: object, correct: object, c: object
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C, label-correct and rejected-correct of the discordant pairs that have a finite C."""
    labels = pair_labels(rewards, correct)
    values = _consistency(c, len(labels.usable))
    keep = labels.discordant & np.isfinite(values)
    return values[keep], labels.label_correct[keep], labels.rejected_correct[keep]


@dataclass(frozen=True)
class BinAccuracy:
    """Label accuracy of the discordant pairs whose C falls in [low, high) (last bin closed)."""

    low: float
    high: float
    accuracy: Estimate


def accuracy_by_c_bin(rewards: object, correct: object, c: object,
                      bins: Sequence[float] = DEFAULT_BINS) -> list[BinAccuracy]:
    """Label accuracy per C bin; each with Wilson interval and binomial test vs 0.5."""
    edges = [float(b) for b in bins]
    if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise DataError(f"C bins {edges}: expected at least two increasing edges")
    cs, right, _ = _discordant_with_c(rewards, correct, c)
    rows = []
    for i, (low, high) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        inside = (cs >= low) & ((cs <= high) if last else (cs < high))
        rows.append(BinAccuracy(low, high, proportion(
            int(right[inside].sum()), int(inside.sum()), chance=0.5,
            what="discordant pairs with C in this bin")))
    return rows


def auc(scores: object, positive: object, level: float = LEVEL) -> Estimate:
    """AUC of ``scores`` for the boolean ``positive`` (ties count 1/2): DeLong's interval, which
    handles the many ties of C (:func:`cream_plugin.instruments.roc.delong_auc`)."""
    return delong_auc(scores, positive, level)


def auc_of_c(rewards: object, correct: object, c: object) -> Estimate:
    """AUC of C for "the label is correct" over discordant pairs (0.5 = C carries no signal)."""
    cs, right, _ = _discordant_with_c(rewards, correct, c)
    return auc(cs, right)


@dataclass(frozen=True)
class SoftLabelAccuracy:
    """Accuracy of CREAM's soft labels and of the hard labels on the same pairs, and soft - hard."""

    soft: Estimate
    hard: Estimate
    difference: Estimate


def soft_label_accuracy(rewards: object, correct: object, c: object) -> SoftLabelAccuracy:
    """Mean of C·[chosen correct] + (1-C)·[rejected correct] vs the hard label accuracy.

    Over discordant pairs with a finite C; t intervals (the soft values are not 0/1), the hard
    one Wilson. The difference is paired (same pairs) with a t interval and t-test p-value.
    """
    cs, right, rejected_right = _discordant_with_c(rewards, correct, c)
    chosen_right = right.astype(np.float64)
    soft = cs * chosen_right + (1 - cs) * rejected_right
    what = "discordant pairs with a finite C"
    diff = soft - chosen_right
    sd = float(diff.std(ddof=1)) if diff.size > 1 else math.nan
    return SoftLabelAccuracy(
        soft=t_interval(soft, what=what),
        hard=proportion(int(right.sum()), int(right.size), chance=0.5, what=what),
        difference=t_interval(diff, what=what).with_mde(mde_mean(sd, int(diff.size))),
    )
