"""Built-in rewarders: implicit DPO reward, LLM-as-a-judge, reward-model and answer-key oracles.

The factories import torch / transformers only when called, so listing plugins stays fast.
Their parameter names tell :func:`cream_plugin.rewarders.build_rewarder` which resources to load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cream_plugin.plugins.hookspecs import hookimpl


def implicit(model: Any, tokenizer: Any, ref_model: Any = None, cache: Any = None,
             model_key: str = "policy", ref_key: str = "reference", batch_size: int = 16,
             progress: bool = True, **options: Any) -> Any:
    """DPO implicit reward: beta * (log pi - log pi_ref) summed (no ref: mean log-lik)."""
    from cream_plugin.rewarders.implicit import ImplicitRewarder

    return ImplicitRewarder(model, tokenizer, ref_model, cache=cache, model_key=model_key,
                            ref_key=ref_key, batch_size=batch_size, progress=progress, **options)


def judge(model: Any, tokenizer: Any, batch_size: int = 8, seed: int = 0, progress: bool = True,
          **options: Any) -> Any:
    """LLM-as-a-judge (SRLM): additive 5-point rubric, 'Score: N' parsed from the judgement."""
    from cream_plugin.rewarders.judge import JudgeRewarder

    return JudgeRewarder(model, tokenizer, batch_size=batch_size, seed=seed, progress=progress,
                         **options)


def oracle(path: str, batch_size: int = 8, progress: bool = True, **options: Any) -> Any:
    """External reward model: an AutoModelForSequenceClassification checkpoint (option path=...)."""
    from cream_plugin.rewarders.oracle import RewardModelRewarder

    return RewardModelRewarder(path, batch_size=batch_size, progress=progress, **options)


def answer_key(references: Sequence[str | None] | None = None) -> Any:
    """Correctness against the gold answer of benchmark prompts (ARC/OBQA letter, GSM8K number)."""
    from cream_plugin.rewarders.oracle import AnswerKeyRewarder

    return AnswerKeyRewarder(references)


@hookimpl
def register_rewarders(register: Any) -> None:
    from cream_plugin.rewarders.pairwise_judge import (
        pairwise_judge,  # light: torch is imported on use
    )

    register("implicit", implicit, implicit_reward=True)
    register("judge", judge)
    register("pairwise-judge", pairwise_judge)
    register("oracle", oracle)
    register("answer-key", answer_key)
