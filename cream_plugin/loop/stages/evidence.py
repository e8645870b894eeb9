"""Per method and iteration, the instruments of issue 13 on the iteration's samples: pool
accuracy, label accuracy of every reward that ranked or could rank them (plus a seeded random
baseline), whether C is informative, and the known biases (length, duplicates, identical)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cream_plugin.loop.artifacts import Artifact
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec


class EvidenceStage(StageSpec):
    step = "evidence"
    parallel = Parallel.REPLICATED
    settings = ("seed",)

    def __init__(self, method: str, iteration: int, samples: StageSpec, correctness: StageSpec,
                 rewards: dict[str, StageSpec], pair_reward: str,
                 consistency: StageSpec | None) -> None:
        """``rewards``: the reward results by the name the report gives them, the one that
        ranked the pairs (``pair_reward``) first and M_{t-1}'s second when there is one."""
        super().__init__(f"{method}/iter{iteration}/evidence", method, iteration)
        self.samples = samples  # read for the responses; its digest is in correctness's
        self.correctness = correctness
        self.rewards = rewards
        self.pair_reward = pair_reward
        self.consistency = consistency

    def upstream(self) -> dict[str, Any]:
        stages = list(self.rewards.values())
        return {"correctness": self.correctness, "rewards": stages[0],
                "prev": stages[1] if len(stages) > 1 else None,
                "consistency": self.consistency}

    def upstream_stages(self) -> list[StageSpec]:
        return [self.samples, *super().upstream_stages()]

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.instruments.collect import iteration_evidence
        from cream_plugin.loop.stages.correctness import correctness_table
        from cream_plugin.loop.stages.pairs import consistency_map
        from cream_plugin.loop.stages.rewards import rewards_table

        rows = ctx.result(self.samples).read_rows()
        c = None
        if self.consistency is not None:
            by_id = consistency_map(ctx.result(self.consistency))
            c = np.array([by_id[str(r["prompt_id"])] for r in rows], dtype=np.float64)
        lengths = np.array([[len(x) for x in r["responses"]] for r in rows], dtype=float)
        evidence = iteration_evidence(
            self.method,
            self.iteration,
            correctness_table(ctx.result(self.correctness)),
            {name: rewards_table(ctx.result(s)) for name, s in self.rewards.items()},
            pair_reward=self.pair_reward,
            consistency=c,
            lengths=lengths,
            responses=[r["responses"] for r in rows],
            seed=ctx.config.seed,
        )
        return Output(rows=[{"evidence": evidence.to_dict()}])


def read_evidence(stage: Artifact) -> dict[str, Any]:
    rows = stage.read_rows()
    return dict(rows[0]["evidence"]) if rows else {}
