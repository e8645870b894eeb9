"""Pool accuracy of M_t and M_(t+1) on the same prompts: M_t's samples of iteration t+1's
prompts (a sampling stage of its own, same sampling seed as M_(t+1)'s) against M_(t+1)'s own."""

from __future__ import annotations

from typing import Any

import numpy as np

from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec


class SamePromptPoolStage(StageSpec):
    """``old``/``new``: correctness stages of M_t's and M_(t+1)'s samples of the same prompts."""

    step = "same-prompt-pool"
    parallel = Parallel.REPLICATED
    settings = ("seed",)

    def __init__(self, method: str, iteration: int, old: StageSpec, new: StageSpec) -> None:
        super().__init__(f"{method}/iter{iteration}/same-prompt-pool", method, iteration)
        self.old, self.new = old, new

    def upstream(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.errors import DataError
        from cream_plugin.instruments.evidence import Evidence, SamePromptPoolRow
        from cream_plugin.instruments.reward_quality import same_prompt_pool

        old_stage, new_stage = ctx.result(self.old), ctx.result(self.new)
        old_rows = {str(r["prompt_id"]): r["correct"] for r in old_stage.read_rows()}
        new_rows = new_stage.read_rows()
        missing = [str(r["prompt_id"]) for r in new_rows if str(r["prompt_id"]) not in old_rows]
        if missing:
            raise DataError(f"stage {self.name}: prompt {missing[0]!r} of {self.new.name} has no "
                            f"row in {old_stage.name}; expected the same prompts")
        old = np.array([old_rows[str(r["prompt_id"])] for r in new_rows], dtype=np.float64)
        new = np.array([r["correct"] for r in new_rows], dtype=np.float64)
        pool = same_prompt_pool(old, new, seed=ctx.config.seed)
        row = SamePromptPoolRow(self.method, self.iteration, pool.old, pool.new, pool.difference)
        return Output(rows=[{"evidence": Evidence(same_prompt_pool=[row]).to_dict()}])
