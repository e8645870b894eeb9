"""Pool accuracy of M_t and M_(t+1) on the same prompts: M_t's samples of iteration t+1's
prompts (a sampling stage of its own, same sampling seed as M_(t+1)'s) against M_(t+1)'s own."""

from __future__ import annotations

import numpy as np

from cream_plugin.artifacts import Stage
from cream_plugin.stages.base import Output, Parallel, StageSpec
from cream_plugin.stages.context import RunContext


class SamePromptPoolStage(StageSpec):
    """``old``/``new``: correctness stages of M_t's and M_(t+1)'s samples of the same prompts."""

    step = "same-prompt-pool"
    parallel = Parallel.REPLICATED
    settings = ("seed",)

    def __init__(self, method: str, iteration: int, old: Stage, new: Stage) -> None:
        super().__init__(f"{method}/iter{iteration}/same-prompt-pool", method, iteration)
        self.old, self.new = old, new

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        return {"old": self.old.digest, "new": self.new.digest}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.errors import DataError
        from cream_plugin.instruments.evidence import Evidence, SamePromptPoolRow
        from cream_plugin.instruments.reward_quality import same_prompt_pool

        old_rows = {str(r["prompt_id"]): r["correct"] for r in self.old.read_rows()}
        new_rows = self.new.read_rows()
        missing = [str(r["prompt_id"]) for r in new_rows if str(r["prompt_id"]) not in old_rows]
        if missing:
            raise DataError(f"stage {self.name}: prompt {missing[0]!r} of {self.new.name} has no "
                            f"row in {self.old.name}; expected the same prompts")
        old = np.array([old_rows[str(r["prompt_id"])] for r in new_rows], dtype=np.float64)
        new = np.array([r["correct"] for r in new_rows], dtype=np.float64)
        pool = same_prompt_pool(old, new, seed=ctx.config.seed)
        row = SamePromptPoolRow(self.method, self.iteration, pool.old, pool.new, pool.difference)
        return Output(rows=[{"evidence": Evidence(same_prompt_pool=[row]).to_dict()}])
