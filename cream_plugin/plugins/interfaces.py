"""Interfaces shared by components: what a rewarder returns, what a sampler and evaluator offer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

Message = dict[str, str]
Prompt = str | list[Message]
"""A chat prompt: a message list (``[{"role": "user", "content": ...}]``) or a plain string."""

PAIR_TEXT_COLUMNS = ("prompt", "chosen", "rejected")
"""The text columns of a preference pair row (a string each, or chat message lists)."""
CONSISTENCY_COLUMN = "consistency"
"""The pair row column holding C, the pair's weight in the CREAM loss."""
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
"""The optional columns of a pair row holding the DPO reference model's summed log-probs."""


@dataclass
class RewardResult:
    """Rewards for P prompts x N responses; NaN where a response could not be scored."""

    rewards: np.ndarray
    counts: Counter[str] = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rewards = np.asarray(self.rewards, dtype=np.float64)
        if self.rewards.ndim != 2:
            raise ValueError(f"rewards must be a (P, N) array, got shape {self.rewards.shape}")


@runtime_checkable
class Rewarder(Protocol):
    """Scores N responses for each of P prompts."""

    def score(self, prompts: list[Prompt], responses: list[list[str]]) -> RewardResult: ...


@runtime_checkable
class Sampler(Protocol):
    """Generates N responses for each prompt, seeded."""

    def generate(self, prompts: list[Prompt], n: int, *, seed: int) -> list[list[str]]: ...


@runtime_checkable
class Evaluator(Protocol):
    """Scores a model on benchmark tasks; returns rows of (task, metric, value, stderr)."""

    def evaluate(self, model: Any, tokenizer: Any, **options: Any) -> list[dict[str, Any]]: ...
