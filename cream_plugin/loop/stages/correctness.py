"""The answer-key correctness of every sampled response (1 / 0; NaN rows for prompts without
a gold answer): the ground truth the instruments measure rewards and the policy against."""

from __future__ import annotations

from typing import Any

import numpy as np

from cream_plugin.loop.artifacts import Artifact
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec


class CorrectnessStage(StageSpec):
    step = "correctness"
    parallel = Parallel.REPLICATED

    def __init__(self, scope: str, samples: StageSpec, iteration: int) -> None:
        super().__init__(f"{scope}/correctness", method=scope.split("/")[0], iteration=iteration)
        self.samples = samples

    def upstream(self) -> dict[str, Any]:
        return {"samples": self.samples}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.instruments.reward_quality import answer_key_correctness

        rows = ctx.result(self.samples).read_rows()
        table = answer_key_correctness(
            [r["prompt"] for r in rows],
            [r["responses"] for r in rows],
            [r.get("reference") for r in rows],
        )
        out = [{"prompt_id": r["prompt_id"], "correct": table[i].tolist()}
               for i, r in enumerate(rows)]
        gold = np.isfinite(table)
        return Output(rows=out, manifest={"gold_responses": int(gold.sum()),
                                          "correct": int(np.nansum(table))})


def correctness_table(stage: Artifact) -> np.ndarray:
    return np.array([r["correct"] for r in stage.read_rows()], dtype=np.float64)
