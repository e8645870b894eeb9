"""Per method and iteration, the instruments of issue 13 on the iteration's samples: pool
accuracy, label accuracy of every reward that ranked or could rank them (plus a seeded random
baseline), whether C is informative, and the known biases (length, duplicates, identical)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cream_plugin.artifacts import Stage
from cream_plugin.stages.base import Output, Parallel, StageSpec
from cream_plugin.stages.context import RunContext


class EvidenceStage(StageSpec):
    step = "evidence"
    parallel = Parallel.REPLICATED
    settings = ("seed",)

    def __init__(self, method: str, iteration: int, samples: Stage, correctness: Stage,
                 rewards: dict[str, np.ndarray], reward_inputs: dict[str, str],
                 pair_reward: str, consistency: Stage | None, lengths: np.ndarray | None) -> None:
        super().__init__(f"{method}/iter{iteration}/evidence", method, iteration)
        self.samples = samples
        self.correctness = correctness
        self.rewards = rewards
        self.reward_inputs = reward_inputs
        self.pair_reward = pair_reward
        self.consistency = consistency
        self.lengths = lengths

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        inputs = {"correctness": self.correctness.digest, **self.reward_inputs}
        if self.consistency is not None:
            inputs["consistency"] = self.consistency.digest
        return inputs

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.instruments.collect import iteration_evidence
        from cream_plugin.stages.correctness import correctness_table

        rows = self.samples.read_rows()
        c = None
        if self.consistency is not None:
            by_id = {str(r["prompt_id"]): float(r["C"]) for r in self.consistency.read_rows()}
            c = np.array([by_id[str(r["prompt_id"])] for r in rows], dtype=np.float64)
        evidence = iteration_evidence(
            self.method,
            self.iteration,
            correctness_table(self.correctness),
            self.rewards,
            pair_reward=self.pair_reward,
            consistency=c,
            lengths=self.lengths,
            responses=[r["responses"] for r in rows],
            seed=ctx.config.seed,
        )
        return Output(rows=[{"evidence": evidence.to_dict()}])


def read_evidence(stage: Stage) -> dict[str, Any]:
    rows = stage.read_rows()
    return dict(rows[0]["evidence"]) if rows else {}
