"""Meta-Rewarding (Wu et al., 2024): SRLM's actor and judge plus a meta-judge that judges the
model's own judgements, so the judging role trains alongside the actor.

Written against :mod:`cream_plugin.plugins.api` and the method's own judge code
(:mod:`cream_plugin.rewarders.meta_rewarding` and the modules it names), as a third party
would write a method; docs/meta-rewarding.md has the paper's recipe, our settings and choices.
Iteration t of a method named ``meta-rewarding`` adds these stages to the run's graph:

- the samples of M_t (``graph.sample``: the run's prompt pool, shared with every method at
  t = 1) and their answer-key correctness;
- ``<method>/iter<t>/rewards-meta-judge-<M_t>``: ``judgements`` sampled judgements of every
  response (their mean score is the response's reward, which the instruments read), and for
  each prompt the meta-judge's battles over the judgements of its most disputed response;
- ``<method>/iter<t>/pairs``: actor pairs by the length control and judge pairs by the
  meta-judge, in one pairs file (``role`` says which), C = 1;
- ``<method>/iter<t>/evidence``: the instruments on the samples, the judge's mean score as the
  reward that formed the actor pairs;
- ``<method>/M<t+1>``: plain DPO on the mixed pairs (``graph.train``).

The options (``method_options.meta-rewarding``) are the fields of
:class:`cream_plugin.rewarders.meta_rewarding.MetaRewardingSettings`; each stage's identity holds
the options it reads, so changing rho re-forms the pairs without judging again.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from cream_plugin.plugins.api import (
    Method,
    Output,
    Parallel,
    RunContext,
    StageGraph,
    StageSpec,
    hookimpl,
    method_settings,
)
from cream_plugin.rewarders.meta_rewarding import MetaRewardingSettings, judge_rows, meta_pairs

NAME = "meta-rewarding"
REWARD_LABEL = "judge (mean of N)"
"""The name the report's instruments give the reward that formed the actor pairs."""
PAIR_OPTIONS = ("length_control_rho", "meta_verdict", "judge_pairs")


def options_digest(settings: MetaRewardingSettings, names: tuple[str, ...]) -> str:
    """The options a stage reads, as its identity sees them."""
    return json.dumps(settings.part(names), sort_keys=True)


class MetaJudgeStage(StageSpec):
    """M_t as judge (N sampled judgements per response) and as meta-judge (battles between
    the judgements of each prompt's most disputed response)."""

    step = "reward"
    parallel = Parallel.REPLICATED
    settings = ("seed",)

    def __init__(self, method: str, iteration: int, model_key: str, samples: StageSpec,
                 options: MetaRewardingSettings) -> None:
        tag = model_key.replace("/", "-")
        super().__init__(f"{method}/iter{iteration}/rewards-meta-judge-{tag}", method,
                         iteration)
        self.model_key = model_key
        self.samples = samples
        self.options = options

    def models(self) -> tuple[str, ...]:
        return (self.model_key,)

    def upstream(self) -> dict[str, Any]:
        return {"samples": self.samples}

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        return {**super().inputs(ctx), "model": ctx.model_digest(self.model_key),
                "options": options_digest(self.options, MetaRewardingSettings.JUDGING)}

    def compute(self, ctx: RunContext) -> Output:
        rows = ctx.result(self.samples).read_rows()
        judged, manifest = judge_rows(ctx.load(self.model_key), ctx.tokenizer, rows,
                                      self.options, seed=ctx.config.seed,
                                      batch_size=ctx.config.rewarder.batch_size)
        return Output(rows=judged, manifest=manifest)


class MetaPairsStage(StageSpec):
    """Actor pairs (length-controlled) and judge pairs (meta-judged) in one pairs file."""

    step = "pairs"
    parallel = Parallel.REPLICATED

    def __init__(self, method: str, iteration: int, samples: StageSpec, rewards: StageSpec,
                 options: MetaRewardingSettings) -> None:
        super().__init__(f"{method}/iter{iteration}/pairs", method, iteration)
        self.samples = samples
        self.rewards = rewards
        self.options = options

    def upstream(self) -> dict[str, Any]:
        return {"samples": self.samples, "rewards": self.rewards}

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        return {**super().inputs(ctx), "options": options_digest(self.options, PAIR_OPTIONS)}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.plugins.api import DataError

        pairs, manifest = meta_pairs(ctx.result(self.samples).read_rows(),
                                     ctx.result(self.rewards).read_rows(), self.options)
        if not pairs:
            manifest["no_pairs"] = True
            if ctx.config.training.require_pairs:
                raise DataError(f"{self.name}: neither actor nor judge pairs formed; "
                                "training.require_pairs is true, so the run stops instead of "
                                "copying the model unchanged")
        return Output(rows=pairs, manifest=manifest)


def meta_rewarding_iteration(graph: StageGraph, method: Method, t: int) -> str:
    """Iteration t: M_t acts, judges and meta-judges; returns M_{t+1}'s key."""
    name = method.name
    options = MetaRewardingSettings.from_options(method_settings(graph.config, method))
    key = graph.checkpoint(name, t)
    samples = graph.sample(name, t, key)
    judged = graph.add(MetaJudgeStage(name, t, key, samples, options))
    pairs = graph.add(MetaPairsStage(name, t, samples, judged, options))
    graph.evidence(name, t, samples, graph.correctness(samples), {REWARD_LABEL: judged},
                   REWARD_LABEL)
    return graph.train(name, t, pairs)


@hookimpl
def register_methods(register: Any) -> None:
    register(Method(NAME, None, build_iteration=meta_rewarding_iteration,
                    options=asdict(MetaRewardingSettings()),
                    description="Meta-Rewarding (Wu et al. 2024): SRLM's judge averaged over "
                    "N judgements, length-controlled actor pairs, and judge pairs from the "
                    "model meta-judging its own judgements; plain DPO on both"))
