"""Preference pairs: best vs worst response per prompt under the method's reward, with C
joined by prompt id from the consistency artifact and M_t's log-probs as DPO reference."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np

from cream_plugin.artifacts import Stage
from cream_plugin.stages.base import Output, Parallel, StageSpec
from cream_plugin.stages.context import RunContext

log = logging.getLogger("cream.pairs")

CONSTANT_C_NOTE = ("the reward does not depend on the model, so M_t and M_(t-1) rank alike and "
                   "C = 1 for every pair: this consistency-regularised method trains exactly as "
                   "its unregularised ablation (cream = cream-no-rc)")


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
                 ref_logps: np.ndarray | None, model_independent: bool = False) -> None:
        super().__init__(f"{method}/iter{iteration}/pairs", method, iteration)
        self.samples = samples
        self.rewards = rewards
        self.reward_inputs = reward_inputs
        self.consistency = consistency
        self.regularised = regularised
        self.ref_logps = ref_logps
        self.model_independent = model_independent

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
        manifest: dict[str, Any] = {"prompts": len(rows), "pairs": len(pairs),
                                    "skipped": len(rows) - len(pairs)}
        if not pairs:
            self._no_pairs(ctx, len(rows))
            manifest["no_pairs"] = True
        if self.regularised and self.model_independent:
            log.warning("%s: %s", self.name, CONSTANT_C_NOTE)
            manifest["constant_consistency"] = True
        return Output(rows=pairs, manifest=manifest)

    def _no_pairs(self, ctx: RunContext, prompts: int) -> None:
        finite = np.isfinite(self.rewards)
        why = (f"{prompts} prompts, {int(finite.sum())} of {self.rewards.size} responses "
               "scored; every prompt's best and worst reward tie or are unscored")
        if ctx.config.training.require_pairs:
            from cream_plugin.errors import DataError

            raise DataError(f"{self.name}: the reward formed no preference pairs ({why}); "
                            "training.require_pairs is true, so the run stops instead of "
                            "copying the model unchanged")
        log.warning("%s: NO PREFERENCE PAIRS (%s): the next model is a copy of this one; set "
                    "training.require_pairs=true to make this an error", self.name, why)

