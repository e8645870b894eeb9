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

ROW_DETAILS = ("argmax", "valid_mass")
"""Per-response details a rewarder may return (the probability-scored judge's most likely score
and valid-token mass), kept beside each prompt's rewards."""


def score_rows(
    rewarder: Any, rows: list[dict[str, Any]], dist: DistContext | None = None
) -> tuple[np.ndarray, Counter[str], list[dict[str, Any]]]:
    """(P, N) rewards of sample rows (sharded by prompt), the rewarder's counts, and each row's
    per-response details (:data:`ROW_DETAILS` the rewarder returned)."""
    from cream_plugin.rewarders import score_rewarder

    def score(mine: list[dict[str, Any]]
              ) -> list[tuple[list[float], dict[str, Any], dict[str, Any]]]:
        result = score_rewarder(
            rewarder,
            [r["prompt"] for r in mine],
            [r["responses"] for r in mine],
            [r.get("reference") for r in mine],
        )
        details = result.details if isinstance(result.details, dict) else {}
        kept = {k: details[k] for k in ROW_DETAILS
                if isinstance(details.get(k), list) and len(details[k]) == len(mine)}
        extras = [{k: v[i] for k, v in kept.items()} for i in range(len(mine))]
        # This rank's counts ride along with its first row; summed after the gather.
        tallies = [dict(result.counts)] + [{} for _ in mine[1:]]
        return list(zip(result.rewards.tolist(), tallies, extras, strict=True))

    scored = map_sharded(rows, score, dist or DistContext())
    counts: Counter[str] = Counter()
    for _, tally, _ in scored:
        counts.update(tally)
    rewards = np.array([s[0] for s in scored], dtype=np.float64).reshape(len(rows), -1)
    return rewards, counts, [s[2] for s in scored]


def tie_counts(rewards: np.ndarray) -> dict[str, int]:
    """Prompts whose best and worst scored responses tie (no pair can form), and prompts with
    any two scored responses tied."""
    all_tied = with_ties = 0
    for row in rewards:
        finite = row[np.isfinite(row)]
        if finite.size < 2:
            continue
        all_tied += int(finite.max() == finite.min())
        with_ties += int(np.unique(finite).size < finite.size)
    return {"prompts_all_tied": all_tied, "prompts_with_ties": with_ties}


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
    version = 2  # 2: the judge reads its score from the logits by default; argmax, valid mass
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
        rewards, counts, extras = score_rows(rewarder, rows, ctx.dist)
        counts.update(tie_counts(rewards))
        out = [{"prompt_id": r["prompt_id"], "rewards": rewards[i].tolist(), **extras[i]}
               for i, r in enumerate(rows)]
        manifest: dict[str, Any] = {"counts": dict(counts)}
        masses = [m for e in extras for m in e.get("valid_mass", [])]
        if masses:  # a probability-scored judge: how much of the distribution it read
            manifest["mean_valid_mass"] = float(np.mean(masses))
        return Output(rows=out, manifest=manifest)


def rewards_table(stage: Stage) -> np.ndarray:
    return np.array([r["rewards"] for r in stage.read_rows()], dtype=np.float64)
