"""The stage graph of a run, built as a value before anything runs: each stage names the
upstream stages it reads, so their digests become its identity without any code threading
them, and the runner can run the graph, or say what running it would reuse and recompute
(``cream run --dry-run``).

The loop: M0 -> SFT -> (sample -> reward -> consistency -> pairs -> train -> evaluate) x T per
method, then how far each model moved. Iteration 1 starts from the shared SFT model M1 for
every method, so its samples, log-probs and implicit rewards are shared (one node each).
With ``consistency.after_last``, M_(T+1) is sampled and ranked once more (C against M_T), after
every other stage of the method.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cream_plugin.config import RunConfig
from cream_plugin.errors import ConfigError
from cream_plugin.loop.runner import Planned
from cream_plugin.loop.stage import StageSpec
from cream_plugin.loop.stages.consistency import ConsistencyStage
from cream_plugin.loop.stages.correctness import CorrectnessStage
from cream_plugin.loop.stages.evaluate import EvaluateStage
from cream_plugin.loop.stages.evidence import EvidenceStage
from cream_plugin.loop.stages.exact_kl import ExactKLStage
from cream_plugin.loop.stages.internal_consistency import InternalConsistencyStage
from cream_plugin.loop.stages.logps import LogpsStage
from cream_plugin.loop.stages.movement import MovementStage
from cream_plugin.loop.stages.pairs import PairsStage
from cream_plugin.loop.stages.prompts import AfterLastPromptsStage, PromptsStage
from cream_plugin.loop.stages.rewards import (
    ImplicitRewardsStage,
    RewardsStage,
    is_implicit,
    needs_model,
)
from cream_plugin.loop.stages.same_prompt_pool import SamePromptPoolStage
from cream_plugin.loop.stages.sample import SampleStage
from cream_plugin.loop.stages.sft import SFTStage
from cream_plugin.loop.stages.train import TrainStage
from cream_plugin.plugins.methods import Method

S = TypeVar("S", bound=StageSpec)


@dataclass(frozen=True)
class Rewards:
    """The reward stages of one iteration of a method (:meth:`StageGraph.rewards`)."""

    reward_name: str
    implicit: bool
    use_model: bool
    rewards: StageSpec
    previous: StageSpec | None
    consistency: StageSpec | None
    ref: StageSpec | None


def checkpoint_key(method: str, t: int) -> str:
    """Checkpoint name of M_t for a method: M0 and M1 are shared by all methods."""
    return f"M{t}" if t <= 1 else f"{method}/M{t}"


def iteration_scope(method: str, t: int) -> str:
    """Where iteration t's samples and log-probs live: shared by every method at t = 1."""
    return "shared/iter1" if t == 1 else f"{method}/iter{t}"


class StageGraph:
    """The stages of a run in the order they run (every stage after its upstream ones), one
    node per stage name: adding a stage that is already there returns the existing node."""

    def __init__(self, config: RunConfig, methods: Mapping[str, Method], run_dir: Path) -> None:
        self.config = config
        self.run_dir = run_dir
        self.methods = methods
        self.nodes: dict[str, StageSpec] = {}
        self.samples: dict[tuple[str, int], SampleStage] = {}

    def __iter__(self) -> Iterator[StageSpec]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def add(self, spec: S) -> S:
        """Add a stage (after its upstream stages); a stage of the same name that is already
        there is returned instead: it must be the same kind of stage reading the same stages."""
        found = self.nodes.setdefault(spec.name, spec)
        if type(found) is not type(spec):
            raise ValueError(f"stage {spec.name}: {type(found).__name__} and "
                             f"{type(spec).__name__} share one name")
        reads = [s.name for s in found.upstream_stages()]
        if found is not spec and reads != [s.name for s in spec.upstream_stages()]:
            raise ValueError(f"stage {spec.name}: added twice with other upstream stages "
                             f"({', '.join(reads) or 'none'} before); give it another name")
        return found

    @staticmethod
    def checkpoint(method: str, t: int) -> str:
        """M_t's checkpoint key for ``method`` (M0 and M1 are shared by every method)."""
        return checkpoint_key(method, t)

    # -- parts of the loop ---------------------------------------------------------------------
    def prompts(self) -> PromptsStage:
        return self.add(PromptsStage())

    def sft(self) -> SFTStage:
        return self.add(SFTStage())

    def sample(self, method: str, t: int, model_key: str, prompts: StageSpec | None = None,
               *, num_responses: int | None = None,
               temperature: float | None = None) -> SampleStage:
        """M_t's samples of iteration t's prompts: the run's prompt pool (shared by every
        method at t = 1), or ``prompts``, a stage whose rows carry ``prompt_id``, ``prompt``,
        ``iteration`` (only rows of iteration t are sampled) and optionally ``reference`` (the
        gold answer). ``num_responses`` and ``temperature`` (0: greedy) override the
        ``sampling`` settings for this stage. Registered as the method's samples of t, which
        the movement instruments measure M_t and M_{t+1} on."""
        pool = prompts is None and num_responses is None and temperature is None
        scope = iteration_scope(method, t) if pool else f"{method}/iter{t}"
        samples = self.add(SampleStage(scope, model_key, prompts or self.prompts(), t,
                                       num_responses=num_responses, temperature=temperature))
        self.samples[(method, t)] = samples
        return samples

    def logps(self, samples: StageSpec, model_key: str, scope: str | None = None) -> LogpsStage:
        """Summed response log-probs of every response of ``samples`` (rows with ``prompt``
        and ``responses``) under ``model_key``; named ``<scope>/logps-<model>``, the scope
        being the samples' folder unless given."""
        scope = scope or samples.name.rpartition("/")[0]
        return self.add(LogpsStage(scope, model_key, samples, samples.iteration))

    def correctness(self, samples: StageSpec, scope: str | None = None) -> CorrectnessStage:
        """The answer-key correctness of every response of ``samples`` (NaN where the row has
        no ``reference``): what the instruments measure rewards and the policy against."""
        scope = scope or samples.name.rpartition("/")[0]
        return self.add(CorrectnessStage(scope, samples, samples.iteration))

    def evidence(self, method: str, t: int, samples: StageSpec, correctness: StageSpec,
                 rewards: dict[str, StageSpec], pair_reward: str,
                 consistency: StageSpec | None = None) -> EvidenceStage:
        """Iteration t's instruments on ``samples``: pool and label accuracy, C's
        informativeness (with ``consistency``), biases and identical responses. ``rewards``:
        stages whose rows carry ``rewards`` (one per response of ``samples``) by the name the
        report gives them, ``pair_reward`` (the one that formed the pairs) first."""
        return self.add(EvidenceStage(method, t, samples, correctness, rewards, pair_reward,
                                      consistency))

    def train(self, method: str, t: int, pairs: StageSpec, mode: str = "none",
              trainer: str | None = None, settings: tuple[str, ...] = ()) -> str:
        """Train M_t on ``pairs`` (rows of the pairs stage's format: prompt, chosen, rejected,
        consistency, optionally ref_chosen_logps and ref_rejected_logps) into M_{t+1}; returns
        M_{t+1}'s key. ``mode``: how the trainer uses C (none = plain DPO); ``trainer``: a
        registered trainer (default: the method's, else ``training.trainer``); ``settings``:
        extra config sections the trainer reads (part of the stage's identity). The method's
        training overrides (``Method.training_overrides``, ``training.method_overrides``) apply."""
        spec = self.methods[method]
        new_key = checkpoint_key(method, t + 1)
        self.add(TrainStage(method, t, checkpoint_key(method, t), new_key, pairs,
                            trainer or spec.trainer_name(self.config), mode, settings,
                            spec.training_settings(self.config)))
        return new_key

    def evaluate(self, method: str, t: int, model_key: str) -> EvaluateStage:
        return self.add(EvaluateStage(method, t, model_key))

    def rewards(self, method: str, t: int, samples: SampleStage) -> Rewards:
        """The rewards of iteration t's samples under M_t and (where C is measured) M_{t-1},
        and their consistency C, as the method's reward defines them."""
        cfg = self.config
        spec = self.methods[method]
        key, prev_key = checkpoint_key(method, t), checkpoint_key(method, t - 1)
        scope = iteration_scope(method, t)
        reward_name = str(spec.rewarder_name(cfg))
        options = spec.reward_options
        implicit = is_implicit(reward_name)
        previous: StageSpec | None = None
        ref = None
        use_model = implicit or needs_model(reward_name)
        if implicit:
            ref = current_logps = self.logps(samples, key)
            before = self.logps(samples, prev_key)
            older = self.logps(samples, checkpoint_key(method, t - 2)) if t > 1 else None
            rewards: StageSpec = self.add(ImplicitRewardsStage(
                scope, reward_name, samples, current_logps, before, t, options))
            previous = self.add(ImplicitRewardsStage(scope, reward_name, samples, before, older,
                                                     t, options))
        else:
            r_scope = f"{method}/iter{t}" if t > 1 else scope
            rewards = self.add(RewardsStage(r_scope, reward_name, key if use_model else None,
                                            samples, t, options))
            if spec.regularised or (use_model and cfg.consistency.measure_all):
                previous = self.add(RewardsStage(scope, reward_name,
                                                 prev_key if use_model else None, samples, t,
                                                 options))
        consistency = None
        if previous is not None:
            consistency = self.add(ConsistencyStage(method, t, rewards, previous))
        return Rewards(reward_name, implicit, use_model, rewards, previous, consistency, ref)

    def iteration(self, method: str, t: int) -> str:
        """Iteration t of ``method``: M_t -> M_{t+1}; returns M_{t+1}'s key. A method with
        ``build_iteration`` adds its own stages; the others get the declarative iteration."""
        spec = self.methods[method]
        if spec.build_iteration is None:
            return self.declared_iteration(method, t)
        new_key = spec.build_iteration(self, spec, t)
        expected = checkpoint_key(method, t + 1)
        node = self.nodes.get(expected)
        if new_key != expected or not isinstance(node, TrainStage):
            raise ConfigError(f"method {method!r}: its build_iteration returned {new_key!r} for "
                              f"iteration {t}; expected {expected!r}, the key of a train stage "
                              "it added (graph.train)")
        return new_key

    def declared_iteration(self, method: str, t: int) -> str:
        """The declarative iteration: sample, reward (and M_{t-1}'s reward, C), pairs,
        instruments, train."""
        cfg = self.config
        spec = self.methods[method]
        key = checkpoint_key(method, t)
        samples = self.sample(method, t, key)
        correctness = self.correctness(samples)
        r = self.rewards(method, t, samples)
        weighted = spec.regularised_at(t)
        pairs = self.add(PairsStage(method, t, samples, r.rewards, r.previous, r.consistency,
                                    weighted, r.ref, model_independent=not r.use_model,
                                    consistency_override=spec.consistency_override))
        if spec.internal_consistency and r.implicit:
            self.add(InternalConsistencyStage(method, t, key, pairs))
        pair_reward = "r_t" if r.implicit else r.reward_name
        tables = {pair_reward: r.rewards}
        if r.previous is not None:
            tables["r_t-1" if r.implicit else f"{r.reward_name} (M_t-1)"] = r.previous
        self.evidence(method, t, samples, correctness, tables, pair_reward, r.consistency)
        mode = cfg.consistency.mode if weighted else "none"
        return self.train(method, t, pairs, mode, settings=spec.trainer_settings)

    def after_last(self, method: str, iterations: int) -> None:
        """``consistency.after_last``: M_{T+1} samples iteration T+1's prompts (a chunk of the
        pool beyond the run's, :class:`AfterLastPromptsStage`), scored for correctness, and
        its rewards against M_T's give C of M_{T+1} vs M_T (the paper's M3-vs-M2 row) exactly
        as an iteration measures it; no pairs, no training. Added after every other stage of
        the method, so no existing stage changes."""
        t = iterations + 1
        key = checkpoint_key(method, t)
        prompts = self.add(AfterLastPromptsStage())
        samples = self.add(SampleStage(iteration_scope(method, t), key, prompts, t))
        self.correctness(samples)
        self.rewards(method, t, samples)

    def movement(self, method: str, iterations: int) -> None:
        """How far each M_t moved to M_{t+1}: the exact KL from a pass holding both models over
        one model's samples, and log-prob figures on the same samples: M_{t+1}'s samples
        (iteration t+1, already scored under both models by the implicit reward) when they
        exist, else M_t's (one extra log-prob pass)."""
        for t in range(1, iterations + 1):
            old, new = checkpoint_key(method, t), checkpoint_key(method, t + 1)
            on_old = on_new = None
            old_samples: SampleStage | None = None
            if (method, t + 1) in self.samples:
                samples = self.samples[(method, t + 1)]
                on_new = (self.logps(samples, new), self.logps(samples, old))
                old_samples = self.samples[(method, t)]
                kl_on = f"M{t + 1}'s samples (iteration {t + 1})"
            else:
                samples = self.samples[(method, t)]
                on_old = (self.logps(samples, old), self.logps(samples, new))
                kl_on = f"M{t}'s samples (iteration {t})"
            kl = self.add(ExactKLStage(method, t, old, new, samples))
            train_log = self.run_dir / f"{new}.train_log.json"
            self.add(MovementStage(method, t, on_old, on_new, train_log, old_samples, kl, kl_on))

    def same_prompt_pool(self, method: str, iterations: int) -> None:
        """Pool accuracy of each M_t against M_{t+1} on the same prompts: M_t samples iteration
        t+1's prompts (its own stage, shared by all methods for M1) and is scored like
        M_{t+1}'s samples of them. Only where M_{t+1} sampled the run's prompt pool, whose
        prompts carry the answer key."""
        for t in range(1, iterations):
            if (method, t + 1) not in self.samples:
                continue
            new_samples = self.samples[(method, t + 1)]
            if new_samples.prompts is not self.prompts():
                continue  # a method's own prompts (spin: the seed set) carry no answer key
            key = checkpoint_key(method, t)
            scope = f"shared/iter{t + 1}/{key}" if t == 1 else f"{method}/iter{t + 1}/M{t}"
            old_samples = self.add(SampleStage(scope, key, self.prompts(), t + 1))
            old = self.correctness(old_samples)
            new = self.correctness(new_samples)
            self.add(SamePromptPoolStage(method, t, old, new))

    def whole_run(self) -> StageGraph:
        """Every stage of the configured run: prompts, SFT and its evaluation, then each
        method's iterations (each new model evaluated) and how far its models moved."""
        self.prompts()
        self.sft()
        self.evaluate("sft", 1, "M1")
        for method, spec in self.methods.items():
            if not spec.trains:
                continue
            for t in range(1, self.config.iterations + 1):
                key = self.iteration(method, t)
                self.evaluate(method, t + 1, key)
            self.movement(method, self.config.iterations)
            self.same_prompt_pool(method, self.config.iterations)
            if self.config.consistency.after_last and spec.reward is not None:
                # C needs a reward; a method with its own iteration (spin) has none to compare
                self.after_last(method, self.config.iterations)
        return self

    def finals(self) -> set[str]:
        """The last model of every method (kept when checkpoints are pruned)."""
        last = {"M1"}
        for method, spec in self.methods.items():
            if spec.trains:
                last.add(checkpoint_key(method, self.config.iterations + 1))
        return last


def format_plan(run_dir: Path, planned: list[Planned]) -> str:
    """The graph as ``cream run --dry-run`` prints it: one line per stage in run order, with
    what it reads (its upstream stages and the models it loads) and whether it is reused or
    computed, and why."""
    computed = sum(1 for p in planned if p.action != "reuse")
    lines = [f"stage graph of {run_dir}: {len(planned)} stages, {len(planned) - computed} "
             f"reused, {computed} to compute"]
    width = max((len(p.spec.name) for p in planned), default=0)
    for p in planned:
        reads = [s.name for s in p.spec.upstream_stages()]
        reads += [f"model {k}" for k in p.spec.models()]
        edges = f"  <- {', '.join(reads)}" if reads else ""
        lines.append(f"  {p.action:<7} {p.spec.name:<{width}}  [{p.reason}]{edges}")
    return "\n".join(lines) + "\n"
