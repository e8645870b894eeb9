"""Summed response-token log-probs of every sample under one model: the implicit reward's
terms and, for the model being trained, the DPO reference log-probs (computed once)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cream_plugin.errors import DataError
from cream_plugin.forward.logprobs import SequenceLogProbs
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec

log = logging.getLogger(__name__)


def logps_table(rows: list[dict[str, Any]]) -> SequenceLogProbs:
    """A log-prob stage's rows as a (P, N) table."""
    return SequenceLogProbs(
        sum=np.array([r["logps"] for r in rows], dtype=np.float64),
        num_tokens=np.array([r["num_tokens"] for r in rows], dtype=np.int64),
    )


class LogpsStage(StageSpec):
    step = "logps"
    parallel = Parallel.SHARDED
    settings = ("rewarder.batch_size", "training.max_length")

    def __init__(self, scope: str, model_key: str, samples: StageSpec, iteration: int) -> None:
        super().__init__(
            f"{scope}/logps-{model_key.replace('/', '-')}",
            method=scope.split("/")[0],
            iteration=iteration,
        )
        self.model_key = model_key
        self.samples = samples

    def models(self) -> tuple[str, ...]:
        return (self.model_key,)

    def upstream(self) -> dict[str, Any]:
        return {"samples": self.samples}

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        return {**super().inputs(ctx), "model": ctx.model_digest(self.model_key)}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.forward.logprobs import response_logps

        rows = ctx.result(self.samples).read_rows()
        # Replica: each rank scores its batches. Sharded: the model is split across the ranks,
        # so all of them step through every batch together and each holds the whole table.
        lockstep = ctx.scoring_sharded
        if lockstep:
            log.info("stage %s: %s FSDP2-sharded across %d processes, every batch on each",
                     self.name, self.model_key, ctx.dist.world_size)
        table = response_logps(
            ctx.load(self.model_key, sharded=lockstep),
            ctx.tokenizer,
            [r["prompt"] for r in rows],
            [r["responses"] for r in rows],
            batch_size=ctx.config.rewarder.batch_size,
            max_length=ctx.config.training.max_length,
            shard=(0, 1) if lockstep else (ctx.dist.rank, ctx.dist.world_size),
            progress=ctx.dist.is_main,
        )
        if ctx.dist.active and not lockstep:  # one rank scored each entry, the others hold 0
            parts = ctx.dist.gather((table.sum, table.num_tokens))
            table.sum = np.sum([p[0] for p in parts], axis=0)
            table.num_tokens = np.sum([p[1] for p in parts], axis=0)
        if not np.isfinite(table.sum).all():
            bad = np.argwhere(~np.isfinite(table.sum))[0].tolist()
            raise DataError(
                f"stage {self.name}: non-finite log-prob for prompt "
                f"{rows[bad[0]]['prompt_id']!r}, response {bad[1]} under {self.model_key}"
            )
        out = [
            {
                "prompt_id": r["prompt_id"],
                "logps": table.sum[i].tolist(),
                "num_tokens": table.num_tokens[i].tolist(),
            }
            for i, r in enumerate(rows)
        ]
        return Output(rows=out, manifest={"model": self.model_key})
