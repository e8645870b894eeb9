"""Preference pairs: best vs worst response per prompt under the method's reward, with C
joined by prompt id from the consistency artifact and M_t's log-probs as DPO reference."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from cream_plugin.artifacts import Artifact
from cream_plugin.stages.base import Output, Parallel, StageSpec
from cream_plugin.stages.context import RunContext


def consistency_map(stage: Artifact) -> dict[str, float]:
    """C by prompt id from a consistency result (the one definition of this map)."""
    return {str(r["prompt_id"]): float(r["C"]) for r in stage.read_rows()}


class PairsStage(StageSpec):
    step = "pairs"
    parallel = Parallel.REPLICATED
    settings = ("consistency", "rewarder")

    def __init__(self, method: str, iteration: int, samples: StageSpec, rewards: StageSpec,
                 previous: StageSpec | None, consistency: StageSpec | None, regularised: bool,
                 ref_logps: StageSpec | None) -> None:
        """``previous`` (M_{t-1}'s rewards) is an edge only: C comes from ``consistency``;
        ``ref_logps`` is M_t's log-prob stage, stored as the DPO reference when given."""
        super().__init__(f"{method}/iter{iteration}/pairs", method, iteration)
        self.samples = samples
        self.rewards = rewards
        self.previous = previous
        self.consistency = consistency
        self.regularised = regularised
        self.ref_logps = ref_logps

    def upstream(self) -> dict[str, Any]:
        return {"samples": self.samples, "rewards": self.rewards, "prev": self.previous,
                "consistency": self.consistency, "ref": self.ref_logps}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.logprobs import SequenceLogProbs
        from cream_plugin.pairs import build_pairs
        from cream_plugin.stages.logps import logps_table
        from cream_plugin.stages.rewards import rewards_table

        rows = ctx.result(self.samples).read_rows()
        ref = None
        if self.ref_logps is not None:
            ref_sum = logps_table(ctx.result(self.ref_logps).read_rows()).sum
            ref = SequenceLogProbs(sum=ref_sum, num_tokens=np.ones_like(ref_sum, dtype=np.int64))
        consistency = None
        if self.regularised and self.consistency is not None:
            consistency = consistency_map(ctx.result(self.consistency))
        stats: Counter[str] = Counter()
        pairs: list[dict[str, Any]] = build_pairs(
            [r["prompt_id"] for r in rows],
            [r["prompt"] for r in rows],
            [r["responses"] for r in rows],
            rewards_table(ctx.result(self.rewards)),
            consistency,
            ref_logps=ref,
            stats=stats,
        )
        return Output(
            rows=pairs, manifest={"prompts": len(rows), "skipped": len(rows) - len(pairs)}
        )
