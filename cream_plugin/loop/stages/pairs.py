"""Preference pairs: best vs worst response per prompt under the method's reward, with C
joined by prompt id from the consistency artifact and M_t's log-probs as DPO reference."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np

from cream_plugin.loop.artifacts import Artifact
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec
from cream_plugin.plugins.interfaces import CONSISTENCY_COLUMN

log = logging.getLogger("cream.pairs")

CONSTANT_C_NOTE = ("the reward does not depend on the model, so M_t and M_(t-1) rank alike and "
                   "C = 1 for every pair: this consistency-regularised method trains exactly as "
                   "its unregularised ablation (cream = cream-no-rc)")


def consistency_map(stage: Artifact) -> dict[str, float]:
    """C by prompt id from a consistency result (the one definition of this map)."""
    return {str(r["prompt_id"]): float(r["C"]) for r in stage.read_rows()}


def shuffle_seed(seed: int, iteration: int) -> int:
    """The seed of iteration ``iteration``'s permutation of C (``consistency_override:
    shuffle``): the run seed and the iteration, nothing else."""
    return seed * 1000 + iteration


def override_consistency(pairs: list[dict[str, Any]], override: str | float,
                         seed: int) -> dict[str, Any]:
    """Replace the C of every pair in place: a number fixes it; ``"shuffle"`` permutes the
    measured values across the pairs with ``seed`` (the same multiset of C, no link to the
    prompt). The measured C stays in each row as ``measured_consistency``; returns what was
    done, for the manifest."""
    from cream_plugin.plugins.methods import SHUFFLE

    measured = [float(p[CONSISTENCY_COLUMN]) for p in pairs]
    if override == SHUFFLE:
        order = np.random.default_rng(seed).permutation(len(pairs))
        values = [measured[int(k)] for k in order]
        done: dict[str, Any] = {"consistency_override": SHUFFLE, "shuffle_seed": seed}
    else:
        values = [float(override)] * len(pairs)
        done = {"consistency_override": float(override)}
    for pair, c, m in zip(pairs, values, measured, strict=True):
        pair["measured_consistency"] = m
        pair[CONSISTENCY_COLUMN] = c
    return done


class PairsStage(StageSpec):
    step = "pairs"
    parallel = Parallel.REPLICATED
    settings = ("consistency", "rewarder")

    def __init__(self, method: str, iteration: int, samples: StageSpec, rewards: StageSpec,
                 previous: StageSpec | None, consistency: StageSpec | None, regularised: bool,
                 ref_logps: StageSpec | None, model_independent: bool = False,
                 consistency_override: str | float | None = None) -> None:
        """``previous`` (M_{t-1}'s rewards) is an edge only: C comes from ``consistency``;
        ``ref_logps`` is M_t's log-prob stage, stored as the DPO reference when given;
        ``consistency_override`` (a method's knob) replaces C of regularised pairs."""
        super().__init__(f"{method}/iter{iteration}/pairs", method, iteration)
        self.samples = samples
        self.rewards = rewards
        self.previous = previous
        self.consistency = consistency
        self.regularised = regularised
        self.ref_logps = ref_logps
        self.model_independent = model_independent
        self.consistency_override = consistency_override if regularised else None

    def upstream(self) -> dict[str, Any]:
        return {"samples": self.samples, "rewards": self.rewards, "prev": self.previous,
                "consistency": self.consistency, "ref": self.ref_logps}

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        found = super().inputs(ctx)
        if self.consistency_override is not None:  # absent: the identity it always had
            found["consistency_override"] = self._override_label(ctx.config.seed)
        return found

    def _override_label(self, seed: int) -> str:
        from cream_plugin.plugins.methods import SHUFFLE

        if self.consistency_override == SHUFFLE:
            return f"{SHUFFLE}:seed={shuffle_seed(seed, self.iteration)}"
        return f"fixed:{float(self.consistency_override or 0.0)!r}"

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.forward.logprobs import SequenceLogProbs
        from cream_plugin.loop.stages.logps import logps_table
        from cream_plugin.loop.stages.rewards import rewards_table
        from cream_plugin.ranking.pairs import build_pairs

        rows = ctx.result(self.samples).read_rows()
        ref = None
        if self.ref_logps is not None:
            ref_sum = logps_table(ctx.result(self.ref_logps).read_rows()).sum
            ref = SequenceLogProbs(sum=ref_sum, num_tokens=np.ones_like(ref_sum, dtype=np.int64))
        consistency = None
        if self.regularised and self.consistency is not None:
            consistency = consistency_map(ctx.result(self.consistency))
        stats: Counter[str] = Counter()
        rewards = rewards_table(ctx.result(self.rewards))
        pairs: list[dict[str, Any]] = build_pairs(
            [r["prompt_id"] for r in rows],
            [r["prompt"] for r in rows],
            [r["responses"] for r in rows],
            rewards,
            consistency,
            ref_logps=ref,
            stats=stats,
        )
        manifest: dict[str, Any] = {"prompts": len(rows), "pairs": len(pairs),
                                    "skipped": len(rows) - len(pairs)}
        if self.consistency_override is not None and pairs:
            manifest.update(override_consistency(
                pairs, self.consistency_override, shuffle_seed(ctx.config.seed, self.iteration)))
        if not pairs:
            self._no_pairs(ctx, len(rows), rewards)
            manifest["no_pairs"] = True
        if self.regularised and self.model_independent:
            log.warning("%s: %s", self.name, CONSTANT_C_NOTE)
            manifest["constant_consistency"] = True
        return Output(rows=pairs, manifest=manifest)

    def _no_pairs(self, ctx: RunContext, prompts: int, rewards: np.ndarray) -> None:
        finite = np.isfinite(rewards)
        why = (f"{prompts} prompts, {int(finite.sum())} of {rewards.size} responses "
               "scored; every prompt's best and worst reward tie or are unscored")
        if ctx.config.training.require_pairs:
            from cream_plugin.errors import DataError

            raise DataError(f"{self.name}: the reward formed no preference pairs ({why}); "
                            "training.require_pairs is true, so the run stops instead of "
                            "copying the model unchanged")
        log.warning("%s: NO PREFERENCE PAIRS (%s): the next model is a copy of this one; set "
                    "training.require_pairs=true to make this an error", self.name, why)

