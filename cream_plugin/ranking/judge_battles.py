"""Meta-Rewarding's judge pairs from the meta-judge's battles (Wu et al. 2024, section 2.2).

The N judgements of one response meet pairwise, each pair in both presentation orders. The
meta-judge favours a position, so the paper weighs a win by how rarely its position wins: over
all battles of an iteration, with W1 and W2 the wins of the first and the second position,
``w1 = W2 / (W1 + W2)`` and ``w2 = W1 / (W1 + W2)``. The battle matrix is
``B[m, n] = w1 * (m beat n from the first position) + w2 * (m beat n from the second)``, and
the paper's "Elo score" of each judgement is the Bradley-Terry maximum-likelihood strength

    argmax_e  sum_{m != n} B[m, n] * log sigmoid(e_m - e_n).

Here a win is the meta-judge's *probability* that the first judgement is better (the
``probability`` verdict, our default) or its 0/1 argmax (``hard``, the paper's counted wins);
a small ridge term keeps the strengths finite when one judgement wins every battle (the
maximum likelihood then diverges, but only the order is used). The judgement with the highest
strength is chosen, the lowest rejected; equal strengths form no pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cream_plugin.errors import ConfigError

VERDICTS = ("probability", "hard")
RIDGE = 1e-3
"""Ridge weight on the strengths: finite when one judgement wins every battle."""
TIE = 1e-9


@dataclass(frozen=True)
class Battles:
    """P(first shown judgement wins) of every ordered pair of one response's judgements.

    ``first_wins[m, n]`` is the meta-judge's probability that judgement m, shown first, beats
    judgement n shown second (NaN on the diagonal).
    """

    first_wins: np.ndarray

    def __post_init__(self) -> None:
        table = np.asarray(self.first_wins, dtype=np.float64)
        if table.ndim != 2 or table.shape[0] != table.shape[1]:
            raise ValueError(f"battles: expected a square table, got shape {table.shape}")
        object.__setattr__(self, "first_wins", table)


def as_wins(battles: Battles, verdict: str) -> np.ndarray:
    """The win table under the verdict rule: probabilities, or 1 where p > 0.5 (0.5 at 0.5)."""
    if verdict not in VERDICTS:
        raise ConfigError(f"meta-rewarding meta_verdict: expected one of {', '.join(VERDICTS)}, "
                          f"got {verdict!r}")
    p = battles.first_wins
    if verdict == "hard":
        return np.where(np.isnan(p), np.nan, np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5)))
    return p


def position_weights(all_battles: list[Battles], verdict: str) -> tuple[float, float]:
    """(w1, w2): each position's win weighted by the other position's share of the wins, over
    every battle of the iteration; (0.5, 0.5) without battles."""
    first = second = 0.0
    for battles in all_battles:
        wins = as_wins(battles, verdict)
        off = ~np.isnan(wins)
        first += float(wins[off].sum())
        second += float((1.0 - wins[off]).sum())
    total = first + second
    if total <= 0:
        return 0.5, 0.5
    return second / total, first / total


def battle_matrix(battles: Battles, weights: tuple[float, float], verdict: str) -> np.ndarray:
    """``B[m, n]``: m's weighted wins over n from both positions (zero diagonal)."""
    wins = np.nan_to_num(as_wins(battles, verdict), nan=0.0)
    w1, w2 = weights
    matrix = w1 * wins + w2 * (1.0 - wins.T)
    np.fill_diagonal(matrix, 0.0)
    return matrix


def bradley_terry(matrix: np.ndarray, ridge: float = RIDGE, steps: int = 50) -> np.ndarray:
    """Strengths maximising ``sum B[m, n] log sigmoid(e_m - e_n) - ridge/2 |e|^2`` (Newton's
    method on a strictly concave objective), centred at zero."""
    b = np.asarray(matrix, dtype=np.float64)
    n = b.shape[0]
    strengths = np.zeros(n)
    games = b + b.T
    for _ in range(steps):
        diff = strengths[:, None] - strengths[None, :]
        win = 1.0 / (1.0 + np.exp(-diff))
        gradient = (b * (1.0 - win) - b.T * win).sum(axis=1) - ridge * strengths
        curvature = games * win * (1.0 - win)
        hessian = curvature - np.diag(curvature.sum(axis=1)) - ridge * np.eye(n)
        step = np.linalg.solve(hessian, gradient)
        strengths = strengths - step
        if float(np.abs(step).max(initial=0.0)) < 1e-10:
            break
    return strengths - strengths.mean()


@dataclass(frozen=True)
class JudgeChoice:
    """The chosen and rejected judgement of one response, with every judgement's strength."""

    chosen: int
    rejected: int
    strengths: np.ndarray


def select_judge_pair(battles: Battles, weights: tuple[float, float],
                      verdict: str = "probability") -> JudgeChoice | None:
    """Highest- vs lowest-strength judgement, or None when all strengths tie."""
    if battles.first_wins.shape[0] < 2:
        return None
    strengths = bradley_terry(battle_matrix(battles, weights, verdict))
    best, worst = int(np.argmax(strengths)), int(np.argmin(strengths))
    if strengths[best] - strengths[worst] <= TIE:
        return None
    return JudgeChoice(chosen=best, rejected=worst, strengths=strengths)


def most_uncertain(scores: np.ndarray) -> int | None:
    """The response whose judgements disagree most (largest score variance over its scored
    judgements; the earliest on ties), as the paper picks one response per prompt for the
    meta-judge; None when no response has two scored judgements."""
    best: int | None = None
    best_var = -1.0
    for k, row in enumerate(np.asarray(scores, dtype=np.float64)):
        scored = row[np.isfinite(row)]
        if scored.size < 2:
            continue
        var = float(scored.var())
        if var > best_var:
            best, best_var = k, var
    return best
