"""SPIN, self-play fine-tuning (Chen et al., 2024): for every seed SFT prompt the human response
is chosen and M_t's own response is rejected; plain DPO trains M_t into M_{t+1}.

Written against :mod:`cream_plugin.plugins.api` only, as a third party would write a method
(docs/plugins.md walks through this file; docs/spin.md has the paper's settings). Iteration t
of a method named ``spin`` adds these stages to the run's graph:

- ``spin/iter<t>/prompts``: the seed conversations SFT trained M1 on, split into the prompt
  (every turn before the last assistant turn) and the human response (that last turn);
- ``spin/iter<t>/samples``: M_t's response to each prompt (``graph.sample``: one per prompt,
  sampled with the run's ``sampling`` settings or greedy);
- ``spin/iter<t>/candidates``: ``[human, sample]`` per prompt with the label rule as rewards,
  ``[1, 0]`` (``[0, 0]`` where the sample is the human text: nothing to learn, no pair);
- ``spin/iter<t>/candidates/logps-<M_t>``: both responses' log-probs under M_t, the DPO
  reference (``graph.logps``);
- ``spin/iter<t>/pairs``: the pairs (``build_pairs``: chosen = human, rejected = sample, C = 1),
  with ``previous_pairs`` iteration t-1's pairs too, scored again under M_t
  (``spin/iter<t>/previous/logps-<M_t>``);
- ``spin/iter<t>/correctness`` and ``spin/iter<t>/evidence``: the instruments on the candidates;
- ``spin/M<t+1>``: plain DPO on the pairs (``graph.train``, consistency mode ``none``).
"""

from __future__ import annotations

import random
from typing import Any

from cream_plugin.plugins.api import (
    ConfigError,
    DataError,
    Method,
    Output,
    Parallel,
    Prompt,
    RunContext,
    StageGraph,
    StageSpec,
    build_pairs,
    data_digest,
    hookimpl,
    logps_table,
    method_settings,
    sft_examples,
)

LABEL = "human > M_t"
"""The name the report gives spin's label rule (the human response beats M_t's)."""

OPTIONS: dict[str, Any] = {"decoding": "sampled", "prompts": None, "previous_pairs": False}
"""``method_options.spin``: ``decoding`` sampled (the paper: the run's sampling settings, which
default to its T 0.8, top-p 0.95) or greedy; ``prompts``: how many seed prompts each iteration
uses (None: every SFT example; a number: that many, drawn once by seed, the same every
iteration); ``previous_pairs``: iteration t > 1 also trains on iteration t-1's pairs, their
reference log-probs taken again under M_t (the official code's data mix)."""

DECODINGS = ("sampled", "greedy")


def split_conversation(example: dict[str, Any], where: str) -> tuple[Prompt, str]:
    """(prompt, human response) of a seed conversation: every turn before the last assistant
    turn, and that turn's text. ``where`` names the row in errors."""
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: expected 'messages', a list of {{role, content}} turns")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        raise DataError(f"{where}: the last turn must be the assistant's (the human response "
                        f"spin keeps as chosen), got role {last.get('role')!r}")
    human = last.get("content")
    if not isinstance(human, str) or not human.strip():
        raise DataError(f"{where}: the last assistant turn has no text")
    prompt = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages[:-1]]
    if not any(m["role"] == "user" for m in prompt):
        raise DataError(f"{where}: no user turn before the last assistant turn")
    return prompt, human


class SpinPromptsStage(StageSpec):
    """The seed prompts and their human responses, tagged with the iteration that uses them."""

    step = "prompts"
    parallel = Parallel.REPLICATED
    settings = ("data.sft_examples", "seed")

    def __init__(self, method: str, iteration: int, cap: int | None) -> None:
        super().__init__(f"{method}/iter{iteration}/prompts", method, iteration)
        self.cap = cap

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        return {"data": data_digest([("seed_sft", "train")], ctx.config.data.data_dir),
                "prompts": str(self.cap)}

    def compute(self, ctx: RunContext) -> Output:
        rows = []
        for index, example in enumerate(sft_examples(ctx.config)):
            row_id = example.get("id", index)
            prompt, human = split_conversation(example, f"seed_sft/train row {row_id!r}")
            rows.append({"prompt_id": f"seed_sft/{row_id}", "prompt": prompt, "human": human,
                         "source": "seed_sft", "reference": None, "iteration": self.iteration})
        if self.cap is not None and self.cap < len(rows):
            keep = sorted(random.Random(f"spin:{ctx.config.seed}").sample(range(len(rows)),
                                                                          self.cap))
            rows = [rows[i] for i in keep]
        return Output(rows=rows, manifest={"prompts": len(rows)})


class SpinCandidatesStage(StageSpec):
    """Per prompt the two responses, human first, and the label rule as their rewards."""

    step = "candidates"
    parallel = Parallel.REPLICATED

    def __init__(self, method: str, iteration: int, prompts: StageSpec,
                 samples: StageSpec) -> None:
        super().__init__(f"{method}/iter{iteration}/candidates", method, iteration)
        self.prompts, self.samples = prompts, samples

    def upstream(self) -> dict[str, Any]:
        return {"prompts": self.prompts, "samples": self.samples}

    def compute(self, ctx: RunContext) -> Output:
        sampled = {str(r["prompt_id"]): r["responses"] for r in
                   ctx.result(self.samples).read_rows()}
        rows, identical = [], 0
        for row in ctx.result(self.prompts).read_rows():
            pid = str(row["prompt_id"])
            if pid not in sampled:
                raise DataError(f"stage {self.name}: prompt {pid!r} has no row in "
                                f"{self.samples.name}")
            sample = sampled[pid][0]
            same = sample.strip() == row["human"].strip()
            identical += same
            rows.append({"prompt_id": pid, "prompt": row["prompt"],
                         "reference": row.get("reference"), "responses": [row["human"], sample],
                         "rewards": [0.0, 0.0] if same else [1.0, 0.0]})
        return Output(rows=rows, manifest={"prompts": len(rows), "identical": identical})


class SpinPairsStage(StageSpec):
    """Chosen = the human response, rejected = M_t's, with M_t's log-probs as DPO reference."""

    step = "pairs"
    parallel = Parallel.REPLICATED

    def __init__(self, method: str, iteration: int, candidates: StageSpec,
                 ref_logps: StageSpec,
                 previous: tuple[StageSpec, StageSpec] | None = None) -> None:
        """``previous``: iteration t-1's candidates and their log-probs under M_t, whose pairs
        are added to this iteration's."""
        super().__init__(f"{method}/iter{iteration}/pairs", method, iteration)
        self.candidates, self.ref_logps, self.previous = candidates, ref_logps, previous

    def upstream(self) -> dict[str, Any]:
        return {"candidates": self.candidates, "ref": self.ref_logps,
                "previous": list(self.previous) if self.previous else None}

    @staticmethod
    def pairs_of(ctx: RunContext, candidates: StageSpec,
                 ref_logps: StageSpec) -> tuple[int, list[dict[str, Any]]]:
        rows = ctx.result(candidates).read_rows()
        return len(rows), build_pairs(
            [r["prompt_id"] for r in rows], [r["prompt"] for r in rows],
            [r["responses"] for r in rows], [r["rewards"] for r in rows],
            ref_logps=logps_table(ctx.result(ref_logps).read_rows()))

    def compute(self, ctx: RunContext) -> Output:
        prompts, pairs = self.pairs_of(ctx, self.candidates, self.ref_logps)
        manifest: dict[str, Any] = {"prompts": prompts, "pairs": len(pairs),
                                    "skipped": prompts - len(pairs), "reward": LABEL}
        if self.previous is not None:
            _, earlier = self.pairs_of(ctx, *self.previous)
            manifest |= {"pairs": len(pairs) + len(earlier), "previous_pairs": len(earlier)}
            pairs += earlier
        if not pairs and ctx.config.training.require_pairs:
            raise DataError(f"{self.name}: every one of M_t's {prompts} responses repeats the "
                            "human response, so there is no pair; training.require_pairs is "
                            "true, so the run stops instead of copying the model unchanged")
        return Output(rows=pairs, manifest={**manifest, "no_pairs": not pairs})


def spin_iteration(graph: StageGraph, method: Method, t: int) -> str:
    """Iteration t of a spin method: M_t's response to every seed prompt is rejected against
    the human one; returns M_{t+1}'s key."""
    name = method.name
    settings = method_settings(graph.config, method)
    decoding, cap = settings["decoding"], settings["prompts"]
    if decoding not in DECODINGS:
        raise ConfigError(f"method_options.{name}.decoding: expected one of "
                          f"{', '.join(DECODINGS)}, got {decoding!r}")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ConfigError(f"method_options.{name}.prompts: expected a whole number >= 1 or "
                          f"null (every seed prompt), got {cap!r}")
    key = graph.checkpoint(name, t)
    prompts = graph.add(SpinPromptsStage(name, t, cap))
    samples = graph.sample(name, t, key, prompts, num_responses=1,
                           temperature=0.0 if decoding == "greedy" else None)
    candidates = graph.add(SpinCandidatesStage(name, t, prompts, samples))
    reference = graph.logps(candidates, key, scope=candidates.name)
    previous = None
    earlier = graph.nodes.get(f"{name}/iter{t - 1}/candidates")
    if settings["previous_pairs"] and earlier is not None:  # built: iterations go in order
        previous = (earlier, graph.logps(earlier, key, scope=f"{name}/iter{t}/previous"))
    pairs = graph.add(SpinPairsStage(name, t, candidates, reference, previous))
    graph.evidence(name, t, candidates, graph.correctness(candidates), {LABEL: candidates},
                   LABEL)
    return graph.train(name, t, pairs)


@hookimpl
def register_methods(register: Any) -> None:
    register(Method("spin", None, build_iteration=spin_iteration, options=OPTIONS,
                    description="SPIN (Chen et al. 2024): each seed SFT prompt's human response "
                    "is chosen over M_t's own; plain DPO"))
