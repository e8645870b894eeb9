"""Exact per-token KL between M_t and M_{t+1} in both directions on one iteration's samples:
a dedicated pass holding both models (see :mod:`cream_plugin.forward.exact_kl`)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec

log = logging.getLogger(__name__)


class ExactKLStage(StageSpec):
    """Per response: summed KL(M_{t+1} || M_t), KL(M_t || M_{t+1}) and its scored positions."""

    step = "exact-kl"
    parallel = Parallel.SHARDED
    settings = ("rewarder.batch_size", "training.max_length")

    def __init__(self, method: str, iteration: int, old: str, new: str,
                 samples: StageSpec) -> None:
        super().__init__(f"{method}/iter{iteration}/exact-kl", method, iteration)
        self.old, self.new = old, new
        self.samples = samples

    def models(self) -> tuple[str, ...]:
        return (self.new, self.old)

    def upstream(self) -> dict[str, Any]:
        return {"samples": self.samples}

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        return {**super().inputs(ctx), "new": ctx.model_digest(self.new),
                "old": ctx.model_digest(self.old)}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.forward.exact_kl import exact_kl

        rows = ctx.result(self.samples).read_rows()
        lockstep = ctx.scoring_sharded
        new = ctx.load(self.new, sharded=lockstep)
        old = ctx.load(self.old, sharded=lockstep, beside=True)
        table = exact_kl(
            new, old, ctx.tokenizer,
            [r["prompt"] for r in rows], [r["responses"] for r in rows],
            batch_size=ctx.config.rewarder.batch_size,
            max_length=ctx.config.training.max_length,
            shard=(0, 1) if lockstep else (ctx.dist.rank, ctx.dist.world_size),
            progress=ctx.dist.is_main,
        )
        ctx.release()  # two models held: free them before the next stage loads one
        if ctx.dist.active and not lockstep:  # one rank computed each entry, the others hold 0
            parts = ctx.dist.gather((table.forward, table.reverse, table.num_tokens))
            table.forward = np.sum([p[0] for p in parts], axis=0)
            table.reverse = np.sum([p[1] for p in parts], axis=0)
            table.num_tokens = np.sum([p[2] for p in parts], axis=0)
        out = [{"prompt_id": r["prompt_id"], "kl_forward": table.forward[i].tolist(),
                "kl_reverse": table.reverse[i].tolist(),
                "num_tokens": table.num_tokens[i].tolist()} for i, r in enumerate(rows)]
        return Output(rows=out, manifest={"new": self.new, "old": self.old})
