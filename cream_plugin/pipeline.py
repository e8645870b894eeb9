"""The iterative self-rewarding loop: M0 -> SFT -> (sample -> reward -> consistency -> pairs ->
train -> evaluate) x T, for one or more methods, resumable stage by stage.

This module only decides *which* stages a run needs, in order (the stage graph); every stage
is an object in :mod:`cream_plugin.stages` and one :class:`~cream_plugin.stages.runner.Runner`
skips, verifies, computes and writes them all. Iteration 1 starts from the shared SFT model M1
for every method, so its samples and log-probs are computed once and shared.

Several processes (``accelerate launch --num_processes K ... -m cream_plugin.cli run``) run the
same stage sequence; each stage declares how it splits the work (cream_plugin.stages.base).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cream_plugin.artifacts import Stage, atomic_write_text, prune_checkpoints, read_manifests
from cream_plugin.config import RunConfig
from cream_plugin.distributed import init_distributed
from cream_plugin.errors import ConfigError
from cream_plugin.methods import Method
from cream_plugin.preflight import preflight
from cream_plugin.run_folder import RunFolder, check_output_dir
from cream_plugin.stages.consistency import ConsistencyStage
from cream_plugin.stages.context import RunContext
from cream_plugin.stages.correctness import CorrectnessStage
from cream_plugin.stages.evaluate import EvaluateStage
from cream_plugin.stages.evidence import EvidenceStage
from cream_plugin.stages.exact_kl import ExactKLStage
from cream_plugin.stages.internal_consistency import InternalConsistencyStage
from cream_plugin.stages.logps import LogpsStage, logps_table
from cream_plugin.stages.movement import MovementStage
from cream_plugin.stages.pairs import PairsStage
from cream_plugin.stages.prompts import PromptsStage
from cream_plugin.stages.rewards import (
    RewardsStage,
    implicit_pair,
    is_implicit,
    needs_model,
    rewards_table,
)
from cream_plugin.stages.runner import ENV_FAULT, Runner
from cream_plugin.stages.same_prompt_pool import SamePromptPoolStage
from cream_plugin.stages.sample import SampleStage
from cream_plugin.stages.sft import SFTStage
from cream_plugin.stages.train import TrainStage

log = logging.getLogger("cream.pipeline")

__all__ = ["ENV_FAULT", "Pipeline", "checkpoint_key"]


def checkpoint_key(method: str, t: int) -> str:
    """Checkpoint name of M_t for a method: M0 and M1 are shared by all methods."""
    return f"M{t}" if t <= 1 else f"{method}/M{t}"


def kept_checkpoints(config: RunConfig, methods: Mapping[str, Method]) -> set[str]:
    """The checkpoint folders ``keep_checkpoints`` names, beside the final ones (always kept).

    Entries: ``final`` (each method's last model, kept anyway), ``all``, ``M<k>`` (model M_k of
    every method; M1 is the shared SFT model, iteration t trains M_t into M_(t+1)),
    ``<method>/M<k>``, or the old integer spelling ``k``, which has always meant M_k (so ``1``
    keeps M1, not the model iteration 1 trained). A name this run never trains is an error,
    raised before the run folder is touched.
    """
    trained = {m for m, spec in methods.items() if spec.reward is not None}
    last = config.iterations + 1
    every = {"M1"} | {checkpoint_key(m, t) for m in trained for t in range(2, last + 1)}
    keep: set[str] = set()
    for i, entry in enumerate(config.keep_checkpoints):
        key = f"keep_checkpoints[{i}]"
        name = f"M{entry}" if isinstance(entry, int) else str(entry).strip()
        method, _, model = name.rpartition("/")
        if name == "all":
            keep |= every
        elif name == "final":
            continue
        elif model[:1] == "M" and model[1:].isdigit():
            k = int(model[1:])
            chosen = {checkpoint_key(m, k) for m in ([method] if method else trained)} & every
            if k == 1 and not method:
                chosen = {"M1"}
            if not chosen:
                raise ConfigError(
                    f"{key}: {entry!r} is not a checkpoint of this run (it trains M1 and, per "
                    f"method {', '.join(sorted(trained)) or '(none)'}, M2..M{last})")
            keep |= chosen
        else:
            raise ConfigError(
                f"{key}: {entry!r} is not a checkpoint name (expected final, all, M<k>, "
                f"<method>/M<k>, or an integer k meaning M<k>)")
    return keep


class Pipeline:
    """Runs the configured methods for ``config.iterations`` iterations in ``run_dir``.

    Everything is validated in the constructor (config, methods, components, data files,
    device) before the run folder is touched.
    """

    def __init__(self, config: RunConfig, run_dir: str | os.PathLike[str] | None = None) -> None:
        self.config = config
        self.run_dir = check_output_dir(str(run_dir or config.output_dir))
        self.methods: dict[str, Method] = preflight(config)
        self.keep = kept_checkpoints(config, self.methods)
        self.folder = RunFolder(self.run_dir)
        self.dist = init_distributed(config.model.device)
        self.ctx = RunContext(config, self.run_dir, self.dist)
        self.runner = Runner(self.ctx)
        self.samples: dict[tuple[str, int], tuple[str, Stage]] = {}

    # -- one iteration of one method -----------------------------------------------------
    def _logps(self, scope: str, key: str, samples: Stage, t: int) -> tuple[Any, str]:
        stage = self.runner.run(LogpsStage(scope, key, samples, t))
        return logps_table(stage.read_rows()), stage.digest

    def iteration(self, method: str, t: int, prompts: Stage) -> str:
        """Run iteration t of ``method``: M_t -> M_{t+1}; returns M_{t+1}'s key."""
        cfg = self.config
        spec = self.methods[method]
        run = self.runner.run
        key = checkpoint_key(method, t)
        scope = "shared/iter1" if t == 1 else f"{method}/iter{t}"
        rows = [r for r in prompts.read_rows() if r["iteration"] == t]
        samples = run(SampleStage(scope, key, prompts, rows, t))
        self.samples[(method, t)] = (scope, samples)
        sample_rows = samples.read_rows()
        ids = [r["prompt_id"] for r in sample_rows]
        correctness = run(CorrectnessStage(scope, samples, t))
        reward_name = str(spec.rewarder_name(cfg))
        implicit = is_implicit(reward_name)
        ref_logps = previous = None
        if implicit:
            current, d_cur = self._logps(scope, key, samples, t)
            before, d_prev = self._logps(scope, checkpoint_key(method, t - 1), samples, t)
            older, d_old = (None, "none")
            if t - 1 > 0:
                older, d_old = self._logps(scope, checkpoint_key(method, t - 2), samples, t)
            rewards, previous = implicit_pair(current, before, older)
            inputs = {"logps": f"{d_cur}:{d_prev}:{d_old}"}
            ref_logps = current.sum
        use_model = implicit or needs_model(reward_name)
        if not implicit:
            r_scope = f"{method}/iter{t}" if t > 1 else scope
            r_stage = run(RewardsStage(r_scope, reward_name, key if use_model else None,
                                       samples, t))
            rewards = rewards_table(r_stage)
            inputs = {"rewards": r_stage.digest}
            if spec.regularised or (use_model and cfg.consistency.measure_all):
                prev_key = checkpoint_key(method, t - 1) if use_model else None
                p_stage = run(RewardsStage(scope, reward_name, prev_key, samples, t))
                previous = rewards_table(p_stage)
                inputs["prev"] = p_stage.digest
        c_stage = None
        if previous is not None:
            c_stage = run(ConsistencyStage(method, t, rewards, previous, ids, inputs))
        weighted = spec.regularised_at(t)
        pairs = run(PairsStage(method, t, samples, rewards, inputs, c_stage, weighted,
                               ref_logps, model_independent=not implicit and not use_model))
        if spec.internal_consistency and implicit:
            run(InternalConsistencyStage(method, t, key, pairs))
        pair_reward = "r_t" if implicit else reward_name
        tables = {pair_reward: rewards}
        if previous is not None:
            tables["r_t-1" if implicit else f"{reward_name} (M_t-1)"] = previous
        lengths = np.array([[len(x) for x in r["responses"]] for r in sample_rows], dtype=float)
        run(EvidenceStage(method, t, samples, correctness, tables, inputs, pair_reward, c_stage,
                          lengths))
        new_key = checkpoint_key(method, t + 1)
        mode = cfg.consistency.mode if weighted else "none"
        run(TrainStage(method, t, key, new_key, pairs, spec.trainer_name(cfg), mode,
                       spec.trainer_settings))
        return new_key

    def movement(self, method: str, iterations: int) -> None:
        """How far each M_t moved to M_{t+1}: the exact KL from a pass holding both models over
        one model's samples, and log-prob figures on the same samples: M_{t+1}'s samples
        (iteration t+1, already scored under both models by the implicit reward) when they
        exist, else M_t's (one extra log-prob pass)."""
        logps = self.runner.run
        for t in range(1, iterations + 1):
            old, new = checkpoint_key(method, t), checkpoint_key(method, t + 1)
            on_old = on_new = old_samples = None
            if (method, t + 1) in self.samples:
                scope, samples = self.samples[(method, t + 1)]
                on_new = (logps(LogpsStage(scope, new, samples, t + 1)),
                          logps(LogpsStage(scope, old, samples, t + 1)))
                old_samples = self.samples[(method, t)][1]
                kl_on = f"M{t + 1}'s samples (iteration {t + 1})"
            else:
                scope, samples = self.samples[(method, t)]
                on_old = (logps(LogpsStage(scope, old, samples, t)),
                          logps(LogpsStage(scope, new, samples, t)))
                kl_on = f"M{t}'s samples (iteration {t})"
            kl = logps(ExactKLStage(method, t, old, new, samples))
            train_log = self.run_dir / f"{new}.train_log.json"
            logps(MovementStage(method, t, on_old, on_new, train_log, old_samples, kl, kl_on))

    def same_prompt_pool(self, method: str, iterations: int, prompts: Stage) -> None:
        """Pool accuracy of each M_t against M_{t+1} on the same prompts: M_t samples iteration
        t+1's prompts (its own stage, shared by all methods for M1) and is scored like
        M_{t+1}'s samples of them."""
        run = self.runner.run
        for t in range(1, iterations):
            if (method, t + 1) not in self.samples:
                continue
            key = checkpoint_key(method, t)
            scope = f"shared/iter{t + 1}/{key}" if t == 1 else f"{method}/iter{t + 1}/M{t}"
            rows = [r for r in prompts.read_rows() if r["iteration"] == t + 1]
            old_samples = run(SampleStage(scope, key, prompts, rows, t + 1))
            old = run(CorrectnessStage(scope, old_samples, t + 1))
            new_scope, new_samples = self.samples[(method, t + 1)]
            new = run(CorrectnessStage(new_scope, new_samples, t + 1))
            run(SamePromptPoolStage(method, t, old, new))

    def evaluate(self, method: str, t: int, key: str) -> None:
        """Score M_t on the benchmarks; rows go to the run's results table."""
        from cream_plugin.results import append_results
        from cream_plugin.stages.evaluate import metric_rows

        stage = self.runner.run(EvaluateStage(method, t, key))
        if self.dist.is_main:
            append_results(self.run_dir, metric_rows(stage.read_rows()))
        self.dist.barrier()

    # -- the whole run -------------------------------------------------------------------
    def _prepare(self, fresh: bool, adopt: bool, break_lock: bool = False) -> None:
        cfg = self.config
        self.folder.claim(adopt=adopt, methods=self.methods)
        self.folder.acquire(break_lock=break_lock)
        if fresh:
            self.folder.wipe()
            self.folder.claim(adopt=True, methods=())
        self.folder.clean_leftovers()
        atomic_write_text(self.run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))

    def run(self, fresh: bool = False, adopt: bool = False, break_lock: bool = False) -> Path:
        """Run every configured method; returns the run folder (report included).

        ``fresh`` deletes cream's own files from the folder first; ``adopt`` lets cream use a
        non-empty folder it did not create; ``break_lock`` takes over another host's lock.
        """
        if self.dist.is_main:
            try:
                self._prepare(fresh, adopt, break_lock)
            except BaseException:
                self.dist.broadcast(False)
                raise
            self.dist.broadcast(True)
        elif not self.dist.broadcast(False):
            raise SystemExit(1)  # the main process reported why
        try:
            self._run_stages()
        finally:
            self.ctx.release()  # an open vLLM engine's processes too, on a failure
            if self.dist.is_main:
                self.folder.release()
        return self.run_dir

    def _run_stages(self) -> None:
        cfg = self.config
        run = self.runner.run
        prompts = run(PromptsStage())
        run(SFTStage())
        self.evaluate("sft", 1, "M1")
        finals: set[str] = {"M1"}
        for method, spec in self.methods.items():
            if spec.reward is None:
                continue
            key = "M1"
            for t in range(1, cfg.iterations + 1):
                key = self.iteration(method, t, prompts)
                self.evaluate(method, t + 1, key)
            self.movement(method, cfg.iterations)
            self.same_prompt_pool(method, cfg.iterations, prompts)
            finals.add(key)
        self.ctx.release()
        if self.dist.is_main:
            self._finish(finals)
        self.dist.barrier()

    def _finish(self, finals: set[str]) -> None:
        from cream_plugin.cards import write_run_cards
        from cream_plugin.report import write_report
        from cream_plugin.report_evidence import write_instruments

        keep = finals | last_checkpoints(self.run_dir)
        keep |= self.keep
        prune_checkpoints(self.run_dir, keep)
        write_tables(self.run_dir)
        write_instruments(self.run_dir, self.config.seed)
        write_report(self.run_dir)
        write_run_cards(self.run_dir)  # after the manifests: cards change no digest
        self.folder.clean_leftovers()


def last_checkpoints(run_dir: Path) -> set[str]:
    """Every method's latest checkpoint in the folder, whichever run made it: pruning never
    removes another method's final model."""
    latest: dict[str, tuple[int, str]] = {}
    for name, m in read_manifests(run_dir).items():
        if m.get("kind") != "folder" or m.get("pruned"):
            continue
        method, _, last = name.rpartition("/")
        if last.startswith("M") and last[1:].isdigit():
            t = int(last[1:])
            if t > latest.get(method, (-1, ""))[0]:
                latest[method] = (t, name)
    return {name for _, name in latest.values()}


def write_tables(run_dir: Path) -> None:
    """consistency.jsonl and timings.jsonl for the report, rebuilt from the manifests."""
    consistency, timings = [], []
    for name, m in read_manifests(run_dir).items():
        if "step" not in m:
            continue
        timings.append(
            {
                "method": {"": "(all)", "shared": "(shared)"}.get(m.get("method", ""),
                                                                 m.get("method")),
                "iteration": m.get("iteration", 0),
                "stage": m["step"],
                "name": name,
                "seconds": m["seconds"],
                "engine_start_seconds": m.get("engine_start_seconds"),
            }
        )
        if m["step"] == "consistency":
            for metric, s in m["summary"].items():
                consistency.append(
                    {"method": m["method"], "iteration": m["iteration"], "metric": metric, **s}
                )
    for file, rows in (("consistency.jsonl", consistency), ("timings.jsonl", timings)):
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_text(run_dir / file, text)

