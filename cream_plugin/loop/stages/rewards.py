"""Rewards for every sample: from a rewarder plugin (judge, oracle, third-party), or the DPO
implicit reward, which goes through its registered rewarder too (its options, e.g. beta,
apply as in ``cream reward``) but reads the log-prob stages' results instead of scoring again
(each (model, sample) log-prob is computed once)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from cream_plugin.loop.artifacts import Artifact
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.distributed import DistContext, map_sharded
from cream_plugin.loop.stage import Output, Parallel, StageSpec
from cream_plugin.loop.stages.logps import LogpsStage

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


def method_options(rewarder: str, options: Mapping[str, Any] | None) -> tuple[str, dict[str, str]]:
    """A reward stage's name tag and identity inputs for a method's own rewarder options (none:
    the tag and inputs of a stage without them, so existing stages keep their identity)."""
    from cream_plugin.plugins.methods import options_tag

    if not options:
        return rewarder, {}
    return rewarder + options_tag(options), {
        "method_options": json.dumps(dict(options), sort_keys=True, default=str)}


def rewarder_options(ctx: RunContext, rewarder: str,
                     options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``rewarder.options`` of the config for this rewarder, under a method's own options."""
    return {**dict(ctx.config.rewarder.options.get(rewarder, {}) or {}), **dict(options or {})}


def is_implicit(rewarder_name: str) -> bool:
    """Whether a rewarder is the log-prob based implicit reward (computed from log-prob
    stages, so each (model, sample) log-prob is computed once per iteration)."""
    from cream_plugin.plugins.registry import get_component

    return bool(get_component("rewarder", rewarder_name).extra.get("implicit_reward"))


def needs_model(rewarder_name: str) -> bool:
    from cream_plugin.plugins.registry import factory_parameters, get_component

    return "model" in factory_parameters(get_component("rewarder", rewarder_name).obj)


class RewardsStage(StageSpec):
    step = "reward"
    version = 2  # 2: the judge reads its score from the logits by default; argmax, valid mass
    parallel = Parallel.SHARDED
    settings = ("rewarder", "seed")

    def __init__(self, scope: str, rewarder: str, model_key: str | None, samples: StageSpec,
                 iteration: int, options: Mapping[str, Any] | None = None) -> None:
        """``options``: a method's own rewarder options (over ``rewarder.options``)."""
        label, self.option_inputs = method_options(rewarder, options)
        tag = f"{label}-{model_key.replace('/', '-')}" if model_key else label
        super().__init__(f"{scope}/rewards-{tag}", method=scope.split("/")[0],
                         iteration=iteration)
        self.rewarder = rewarder
        self.model_key = model_key
        self.samples = samples
        self.options = dict(options or {})

    def models(self) -> tuple[str, ...]:
        return (self.model_key,) if self.model_key else ()

    def upstream(self) -> dict[str, Any]:
        return {"samples": self.samples}

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        model = ctx.model_digest(self.model_key) if self.model_key else "none"
        return {**super().inputs(ctx), "model": model, **self.option_inputs}

    def compute(self, ctx: RunContext) -> Output:
        cfg = ctx.config
        key = self.model_key
        rows = ctx.result(self.samples).read_rows()
        rewarder = ctx.component(
            "rewarder",
            self.rewarder,
            {
                "model": lambda: ctx.load(key) if key else None,
                "tokenizer": lambda: ctx.tokenizer,
                "batch_size": lambda: cfg.rewarder.batch_size,
                "seed": lambda: cfg.seed,
            },
            options=rewarder_options(ctx, self.rewarder, self.options),
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


class NotLoaded:
    """Stands in for a model the implicit rewarder never runs: every log-prob it asks for is
    already in its cache (from the log-prob stages); touching it is a bug, said plainly."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"model {self.key} is not loaded: its log-probs come from the "
                           f"log-prob stage, yet the rewarder asked for {name!r}")


class ImplicitRewardsStage(StageSpec):
    """The implicit reward of ``policy``'s log-probs against ``reference``'s (none: M0, the
    mean log-likelihood), computed by the registered rewarder from the log-prob results."""

    step = "reward"
    parallel = Parallel.REPLICATED
    settings = ("rewarder", "training.max_length")

    def __init__(self, scope: str, rewarder: str, samples: StageSpec, policy: LogpsStage,
                 reference: LogpsStage | None, iteration: int,
                 options: Mapping[str, Any] | None = None) -> None:
        """``options``: a method's own rewarder options (over ``rewarder.options``)."""
        label, self.option_inputs = method_options(rewarder, options)
        tag = policy.model_key.replace("/", "-")
        super().__init__(f"{scope}/rewards-{label}-{tag}", method=scope.split("/")[0],
                         iteration=iteration)
        self.rewarder = rewarder
        self.samples = samples
        self.policy = policy
        self.reference = reference
        self.options = dict(options or {})

    def upstream(self) -> dict[str, Any]:
        return {"samples": self.samples, "policy": self.policy, "reference": self.reference}

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        return {**super().inputs(ctx), **self.option_inputs}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.forward.logprobs import LogProbCache
        from cream_plugin.rewarders import score_rewarder

        cfg = ctx.config
        rows = ctx.result(self.samples).read_rows()
        max_length = cfg.training.max_length
        cache = LogProbCache()
        tables = {"policy": self.policy, "reference": self.reference}
        for key, stage in tables.items():
            if stage is not None:
                fill_cache(cache, f"{key}@max{max_length}", rows, ctx.result(stage).read_rows())
        ref_key = self.reference.model_key if self.reference is not None else None
        rewarder = ctx.component(
            "rewarder",
            self.rewarder,
            {
                "model": lambda: NotLoaded(self.policy.model_key),
                "ref_model": lambda: NotLoaded(ref_key) if ref_key else None,
                "tokenizer": lambda: ctx.tokenizer,
                "cache": lambda: cache,
                "model_key": lambda: "policy",
                "ref_key": lambda: "reference",
                "batch_size": lambda: cfg.rewarder.batch_size,
                "progress": lambda: False,
            },
            options={"max_length": max_length,
                     **rewarder_options(ctx, self.rewarder, self.options)},
        )
        result = score_rewarder(rewarder, [r["prompt"] for r in rows],
                                [r["responses"] for r in rows],
                                [r.get("reference") for r in rows])
        out = [{"prompt_id": r["prompt_id"], "rewards": result.rewards[i].tolist()}
               for i, r in enumerate(rows)]
        return Output(rows=out, manifest={"counts": dict(result.counts),
                                          "cache_misses": cache.misses})


def fill_cache(cache: Any, model_key: str, samples: list[dict[str, Any]],
               logps: list[dict[str, Any]]) -> None:
    """Put a log-prob stage's rows into a log-prob cache under ``model_key``."""
    for sample, scored in zip(samples, logps, strict=True):
        for j, response in enumerate(sample["responses"]):
            key = cache.key(model_key, sample["prompt"], response)
            cache.put(key, (scored["logps"][j], scored["num_tokens"][j]))


def rewards_table(stage: Artifact) -> np.ndarray:
    return np.array([r["rewards"] for r in stage.read_rows()], dtype=np.float64)
