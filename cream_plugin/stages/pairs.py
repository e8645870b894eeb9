"""Preference pairs: best vs worst response per prompt under the method's reward, with C
joined by prompt id from the consistency artifact and M_t's log-probs as DPO reference."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from cream_plugin.artifacts import Stage
from cream_plugin.stages.base import Output, Parallel, StageSpec
from cream_plugin.stages.context import RunContext


def consistency_map(stage: Stage | None) -> dict[str, float] | None:
    if stage is None:
        return None
    return {str(r["prompt_id"]): float(r["C"]) for r in stage.read_rows()}


class PairsStage(StageSpec):
    step = "pairs"
    parallel = Parallel.REPLICATED
    settings = ("consistency", "rewarder")

    def __init__(self, method: str, iteration: int, samples: Stage, rewards: np.ndarray,
                 reward_inputs: dict[str, str], consistency: Stage | None, regularised: bool,
                 ref_logps: np.ndarray | None) -> None:
        super().__init__(f"{method}/iter{iteration}/pairs", method, iteration)
        self.samples = samples
        self.rewards = rewards
        self.reward_inputs = reward_inputs
        self.consistency = consistency
        self.regularised = regularised
        self.ref_logps = ref_logps

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        inputs = {"samples": self.samples.digest, **self.reward_inputs}
        if self.consistency is not None:
            inputs["consistency"] = self.consistency.digest
        return inputs

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.logprobs import SequenceLogProbs
        from cream_plugin.pairs import build_pairs

        rows = self.samples.read_rows()
        ref = None
        if self.ref_logps is not None:
            ref = SequenceLogProbs(
                sum=self.ref_logps, num_tokens=np.ones_like(self.ref_logps, dtype=np.int64)
            )
        stats: Counter[str] = Counter()
        pairs: list[dict[str, Any]] = build_pairs(
            [r["prompt_id"] for r in rows],
            [r["prompt"] for r in rows],
            [r["responses"] for r in rows],
            self.rewards,
            consistency_map(self.consistency) if self.regularised else None,
            ref_logps=ref,
            stats=stats,
        )
        return Output(
            rows=pairs, manifest={"prompts": len(rows), "skipped": len(rows) - len(pairs)}
        )
