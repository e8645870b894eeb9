"""SCIR's quantity (its Figure 2): how often M_t's two internal reward models agree on the
iteration's pairs. The implicit one is r_t = log pi_t - log pi_{t-1} (the reward that ranked
the responses); the generative one is M_t judging the pair in both orders. Reported as
``scir_C`` beside CREAM's cross-iteration C."""

from __future__ import annotations

from typing import Any

from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec


class InternalConsistencyStage(StageSpec):
    step = "consistency"
    parallel = Parallel.MAIN
    settings = ("training.beta", "training.max_length", "rewarder.batch_size")

    def __init__(self, method: str, iteration: int, model_key: str, pairs: StageSpec) -> None:
        super().__init__(f"{method}/iter{iteration}/internal-consistency", method, iteration)
        self.model_key = model_key
        self.pairs = pairs

    def models(self) -> tuple[str, ...]:
        return (self.model_key,)

    def upstream(self) -> dict[str, Any]:
        return {"pairs": self.pairs}

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        return {**super().inputs(ctx), "model": ctx.model_digest(self.model_key)}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.trainers.scir_trainer import internal_consistency

        pairs = ctx.result(self.pairs).read_rows()
        cfg = ctx.config
        # pairs carry ref = log pi_t and reward = log pi_t - log pi_{t-1}: recover pi_{t-1}.
        result = internal_consistency(
            ctx.load(self.model_key),
            ctx.tokenizer,
            pairs,
            beta=cfg.training.beta,
            ref_chosen_logps=[p["ref_chosen_logps"] - p["chosen_reward"] for p in pairs],
            ref_rejected_logps=[p["ref_rejected_logps"] - p["rejected_reward"] for p in pairs],
            batch_size=cfg.rewarder.batch_size,
            max_length=cfg.training.max_length,
        )
        summary = {"scir_C": {"mean": result["rate"], "std": None, "n": result["n"]}}
        return Output(rows=[dict(result)], manifest={"summary": summary})
