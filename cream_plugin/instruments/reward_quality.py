"""Reward quality against ground truth: pool accuracy and the label accuracy of a reward's pairs.

A reward "labels" a prompt by its best-vs-worst pair (the pair DPO trains on). Against gold
answers, the label is right when the chosen response is correct and the rejected one wrong; only
pairs whose two responses differ in correctness can be right or wrong, so label accuracy is
computed among those (0.5 = a coin flip). Best and worst follow
:func:`cream_plugin.ranking.pairs.build_pairs` exactly: the highest / lowest finite reward, ties to
the earliest response, no pair when fewer than two rewards are finite or best equals worst.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cream_plugin.errors import DataError
from cream_plugin.instruments.cluster_bootstrap import N_BOOT, cluster_ratio
from cream_plugin.instruments.estimate import Estimate, as_numbers, undefined
from cream_plugin.instruments.intervals import proportion
from cream_plugin.plugins.interfaces import Prompt


def as_table(values: object, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A (P, N) float array, or a DataError naming the input and the expected shape."""
    table = as_numbers(values, name, 2, "(P, N)")
    if shape is not None and table.shape != shape:
        raise DataError(f"{name} has shape {table.shape}; expected {shape}")
    return table


def answer_key_correctness(
    prompts: Sequence[Prompt],
    responses: Sequence[Sequence[str]],
    references: Sequence[str | None],
) -> np.ndarray:
    """(P, N) 1.0 / 0.0 correctness by the project's answer key; NaN rows for prompts without one.

    This is the ``answer-key`` rewarder (:class:`AnswerKeyRewarder`) itself, so "correct" means
    the same thing in the instruments as in the oracle method.
    """
    from cream_plugin.rewarders.oracle import AnswerKeyRewarder

    try:
        result = AnswerKeyRewarder().score(
            list(prompts), [list(r) for r in responses], references=list(references))
    except ValueError as exc:
        raise DataError(f"answer key: {exc}") from None
    return result.rewards


def pool_accuracy(correct: object) -> Estimate:
    """Mean correctness over all responses with a gold answer, Wilson 95% interval, n responses.

    Responses are clustered N per prompt, so the interval (which treats them as independent) is
    somewhat narrow when responses to a prompt agree; the docs say so.
    """
    table = as_table(correct, "correct")
    known = table[np.isfinite(table)]
    if known.size and not np.isin(known, (0.0, 1.0)).all():
        raise DataError("correct: expected 1.0, 0.0 or NaN entries")
    return proportion(int(known.sum()), int(known.size), what="responses with a gold answer")


@dataclass(frozen=True)
class SamePromptPool:
    """Pool accuracy of M_t and M_(t+1) on the same prompts, and the mean per-prompt change."""

    old: Estimate
    new: Estimate
    difference: Estimate


def same_prompt_pool(correct_old: object, correct_new: object, *, seed: int = 0,
                     n_boot: int = N_BOOT) -> SamePromptPool:
    """M_t's and M_(t+1)'s correctness tables on the same prompts (rows aligned), as pool
    accuracies and the mean over prompts of (share correct under M_(t+1)) - (under M_t), with a
    prompt-clustered bootstrap interval. Prompts without a gold answer under either are left out.
    """
    old = as_table(correct_old, "correct (M_t)")
    new = as_table(correct_new, "correct (M_t+1)")
    if old.shape[0] != new.shape[0]:
        raise DataError(f"correct (M_t) has {old.shape[0]} prompts but correct (M_t+1) has "
                        f"{new.shape[0]}; expected the same prompts")
    def shares(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        known = np.isfinite(table).sum(axis=1)
        return np.where(np.isfinite(table), table, 0.0).sum(axis=1) / np.maximum(known, 1), known

    (share_old, known_old), (share_new, known_new) = shares(old), shares(new)
    both = (known_old > 0) & (known_new > 0)
    diff = np.where(both, share_new - share_old, 0.0)
    change = cluster_ratio(diff, both.astype(np.float64), seed=seed, n_boot=n_boot,
                           unit="prompts")
    return SamePromptPool(pool_accuracy(old), pool_accuracy(new), change)


def best_worst(rewards: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per prompt: index of the best and the worst response, and whether the pair exists.

    The same rule as :func:`cream_plugin.ranking.pairs.build_pairs` (tested against it).
    """
    table = as_table(rewards, "rewards")
    p, n = table.shape
    if n == 0:
        zero = np.zeros(p, dtype=np.int64)
        return zero, zero.copy(), np.zeros(p, dtype=bool)
    finite = np.isfinite(table)
    best = np.argmax(np.where(finite, table, -np.inf), axis=1)
    worst = np.argmin(np.where(finite, table, np.inf), axis=1)
    rows = np.arange(p)
    with np.errstate(invalid="ignore"):
        usable = (finite.sum(axis=1) >= 2) & (table[rows, best] > table[rows, worst])
    return best, worst, usable


@dataclass(frozen=True)
class PairLabels:
    """The best-vs-worst pair of every prompt and the gold correctness of both ends."""

    best: np.ndarray              # (P,) int
    worst: np.ndarray             # (P,) int
    usable: np.ndarray            # (P,) bool: the reward yields a pair
    chosen_correct: np.ndarray    # (P,) float, NaN without a gold answer or pair
    rejected_correct: np.ndarray  # (P,) float

    @property
    def discordant(self) -> np.ndarray:
        """Pairs whose two responses differ in correctness: the only ones a label can get right."""
        with np.errstate(invalid="ignore"):
            return self.usable & (self.chosen_correct != self.rejected_correct) & np.isfinite(
                self.chosen_correct) & np.isfinite(self.rejected_correct)

    @property
    def label_correct(self) -> np.ndarray:
        """(P,) bool: the chosen response is the correct one (meaningful where discordant)."""
        return self.discordant & (self.chosen_correct == 1.0)


def pair_labels(rewards: object, correct: object) -> PairLabels:
    """Best/worst pairs of ``rewards`` with the correctness of their two responses."""
    r = as_table(rewards, "rewards")
    c = as_table(correct, "correct", r.shape)
    best, worst, usable = best_worst(r)
    rows = np.arange(r.shape[0])
    if r.shape[1] == 0:
        empty = np.full(r.shape[0], np.nan)
        return PairLabels(best, worst, usable, empty, empty.copy())
    chosen = np.where(usable, c[rows, best], np.nan)
    rejected = np.where(usable, c[rows, worst], np.nan)
    return PairLabels(best, worst, usable, chosen, rejected)


@dataclass(frozen=True)
class LabelAccuracy:
    """Label accuracy of one reward's pairs, with the counts that led to its n."""

    accuracy: Estimate
    prompts: int
    pairs: int
    pairs_with_gold: int
    discordant_pairs: int


def label_accuracy(rewards: object, correct: object) -> LabelAccuracy:
    """Share of discordant best-vs-worst pairs whose chosen response is the correct one.

    Wilson 95% interval and the exact two-sided binomial test against 0.5 (chance).
    """
    labels = pair_labels(rewards, correct)
    with_gold = labels.usable & np.isfinite(labels.chosen_correct) & np.isfinite(
        labels.rejected_correct)
    disc = labels.discordant
    k, n = int(labels.label_correct.sum()), int(disc.sum())
    if n == 0:
        why = ("no pairs" if not labels.usable.any() else "no pairs with a gold answer"
               if not with_gold.any() else "no pair whose two responses differ in correctness")
        acc = undefined(why, method="Wilson 95%, exact binomial test vs 0.5")
    else:
        acc = proportion(k, n, chance=0.5, what="discordant pairs")
    return LabelAccuracy(acc, prompts=len(labels.usable), pairs=int(labels.usable.sum()),
                         pairs_with_gold=int(with_gold.sum()), discordant_pairs=n)


def within_prompt_auc(rewards: object, correct: object, *, seed: int = 0,
                      n_boot: int = N_BOOT) -> Estimate:
    """AUC of a reward for correctness over every within-prompt pair of a correct and a wrong
    response (a tie counts 1/2), pooled over prompts, with a prompt-clustered bootstrap interval.

    Best-vs-worst label accuracy uses one pair per prompt; this uses all c * w pairs of a prompt
    with c correct and w wrong responses, so it has more power. Responses with no finite reward
    or no gold answer are left out. ``n`` is the number of pairs.
    """
    r = as_table(rewards, "rewards")
    c = as_table(correct, "correct", r.shape)
    known = np.isfinite(r) & np.isfinite(c)
    right = known & (c == 1.0)
    wrong = known & (c == 0.0)
    # (P, N, N): response i correct, response j wrong, both scored.
    pairs = right[:, :, None] & wrong[:, None, :]
    with np.errstate(invalid="ignore"):
        diff = r[:, :, None] - r[:, None, :]
    wins = np.where(pairs, (diff > 0) + 0.5 * (diff == 0), 0.0).sum(axis=(1, 2))
    count = pairs.sum(axis=(1, 2)).astype(np.float64)
    return cluster_ratio(wins, count, n_boot=n_boot, seed=seed,
                         unit="pairs of a correct and a wrong response")


def random_rewards(shape: tuple[int, int], seed: int, like: object = None) -> np.ndarray:
    """A seeded random reward, the chance baseline for label accuracy.

    With ``like`` (another reward table of the same shape), its unscored (NaN) entries stay
    unscored, so the random baseline ranks exactly the responses the real reward ranked.
    """
    values = np.random.default_rng(seed).random(shape)
    if like is not None:
        values = np.where(np.isfinite(as_table(like, "like", tuple(shape))), values, np.nan)
    return values
