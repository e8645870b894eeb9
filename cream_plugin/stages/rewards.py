"""Rewards for every sample: from a rewarder plugin (judge, oracle, third-party), or the DPO
implicit reward computed from the log-prob stages by the registered rewarder's own formula."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from cream_plugin.artifacts import Stage
from cream_plugin.distributed import DistContext, map_sharded
from cream_plugin.logprobs import SequenceLogProbs
from cream_plugin.stages.base import Output, Parallel, StageSpec
from cream_plugin.stages.context import RunContext


def score_rows(
    rewarder: Any, rows: list[dict[str, Any]], dist: DistContext | None = None
) -> tuple[np.ndarray, Counter[str]]:
    """(P, N) rewards of sample rows (sharded by prompt) and the rewarder's counts."""
    from cream_plugin.rewarders import score_rewarder

    def score(mine: list[dict[str, Any]]) -> list[tuple[list[float], dict[str, int]]]:
        result = score_rewarder(
            rewarder,
            [r["prompt"] for r in mine],
            [r["responses"] for r in mine],
            [r.get("reference") for r in mine],
        )
        # This rank's counts ride along with its first row; summed after the gather.
        tallies = [dict(result.counts)] + [{} for _ in mine[1:]]
        return list(zip(result.rewards.tolist(), tallies, strict=True))

    scored = map_sharded(rows, score, dist or DistContext())
    counts: Counter[str] = Counter()
    for _, tally in scored:
        counts.update(tally)
    return np.array([s[0] for s in scored], dtype=np.float64).reshape(len(rows), -1), counts


def implicit_pair(
    current: SequenceLogProbs,
    previous: SequenceLogProbs,
    before_previous: SequenceLogProbs | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(r_t, r_{t-1}) for CREAM: r_t = log pi_t - log pi_{t-1}; r_{t-1} = log pi_{t-1} -
    log pi_{t-2}, or the mean log-likelihood when M_{t-1} is M0 (no reference). NaN where a
    response has no token (the registered ``implicit`` rewarder's rule)."""
    from cream_plugin.rewarders.implicit import implicit_rewards

    return implicit_rewards(current, previous), implicit_rewards(previous, before_previous)


def is_implicit(rewarder_name: str) -> bool:
    """Whether a rewarder is the log-prob based implicit reward (computed from log-prob
    stages, so each (model, sample) log-prob is computed once per iteration)."""
    from cream_plugin.registry import get_component

    return bool(get_component("rewarder", rewarder_name).extra.get("implicit_reward"))


def needs_model(rewarder_name: str) -> bool:
    from cream_plugin.registry import factory_parameters, get_component

    return "model" in factory_parameters(get_component("rewarder", rewarder_name).obj)


class RewardsStage(StageSpec):
    step = "reward"
    parallel = Parallel.SHARDED
    settings = ("rewarder", "seed")

    def __init__(self, scope: str, rewarder: str, model_key: str | None, samples: Stage,
                 iteration: int) -> None:
        tag = f"{rewarder}-{model_key.replace('/', '-')}" if model_key else rewarder
        super().__init__(f"{scope}/rewards-{tag}", method=scope.split("/")[0],
                         iteration=iteration)
        self.rewarder = rewarder
        self.model_key = model_key
        self.samples = samples

    def models(self) -> tuple[str, ...]:
        return (self.model_key,) if self.model_key else ()

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        model = ctx.model_digest(self.model_key) if self.model_key else "none"
        return {"samples": self.samples.digest, "model": model}

    def compute(self, ctx: RunContext) -> Output:
        cfg = ctx.config
        key = self.model_key
        rows = self.samples.read_rows()
        rewarder = ctx.component(
            "rewarder",
            self.rewarder,
            {
                "model": lambda: ctx.load(key) if key else None,
                "tokenizer": lambda: ctx.tokenizer,
                "batch_size": lambda: cfg.rewarder.batch_size,
                "seed": lambda: cfg.seed,
            },
            options=dict(cfg.rewarder.options.get(self.rewarder, {}) or {}),
        )
        rewards, counts = score_rows(rewarder, rows, ctx.dist)
        out = [{"prompt_id": r["prompt_id"], "rewards": rewards[i].tolist()}
               for i, r in enumerate(rows)]
        return Output(rows=out, manifest={"counts": dict(counts)})


def rewards_table(stage: Stage) -> np.ndarray:
    return np.array([r["rewards"] for r in stage.read_rows()], dtype=np.float64)
