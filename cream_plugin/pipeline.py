"""The iterative self-rewarding loop: M0 -> SFT -> (sample -> reward -> consistency -> pairs ->
train -> evaluate) x T, for one or more methods, resumable stage by stage.

Every stage writes one artifact with a manifest (cream_plugin.artifacts). A complete stage is
skipped on restart; a stage's inputs are the digests of the stages it reads, so a changed
setting invalidates it and everything after it. Iteration 1 starts from the shared SFT model
M1 for every method, so its samples and log-probs are computed once and shared.

Several processes (``accelerate launch --num_processes K ... -m cream_plugin.cli run``): every
process runs the same stage sequence (cream_plugin.distributed). Sampling and rewarder scoring
are sharded by prompt (sampling is seeded per row, so a prompt's responses do not depend on which
process draws them); log-prob scoring shards the single-process batch plan by whole batches, so
every sum is bit-identical to one process; SFT and preference training run under TRL's own DDP
with ``batch_size`` read as the global batch (``batch_size / K`` per process). Evaluation runs
on the main process only: lm-eval's HFLM treats an in-memory model as single-process, and
splitting the tasks across processes would change lm-eval's cross-task batching, so the scores
could differ from a single-process run (and the default task list is one group). Only the main
process writes artifacts; the others wait at a barrier and read them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import gc
import json
import logging
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cream_plugin.artifacts import Stage, prune_checkpoints
from cream_plugin.config import RunConfig
from cream_plugin.distributed import DistContext, init_distributed, map_sharded
from cream_plugin.errors import ConfigError

log = logging.getLogger("cream.pipeline")

ENV_FAULT = "CREAM_FAULT_STAGE"
"""Testing aid: SIGKILL the run half-way through the stage whose name matches this pattern."""


@dataclass(frozen=True)
class Method:
    """A row of the CREAM paper's Table 1: which reward ranks responses, and whether the
    consistency between M_t's and M_{t-1}'s rankings regularises training."""

    name: str
    reward: str | None  # "main" (rewarder.name), "judge", "oracle"; None: stop after SFT
    regularised: bool
    trainer: str | None = None  # a registered trainer; None: the config's training.trainer


METHODS: dict[str, Method] = {
    "sft": Method("sft", None, False),
    "srlm": Method("srlm", "judge", False),
    "oracle": Method("oracle", "oracle", False),
    "cream-no-rc": Method("cream-no-rc", "main", False),
    "cream": Method("cream", "main", True),
    # SCIR (second paper): implicit-reward pairs, trained so that the implicit and the
    # generative internal reward models agree (cream_plugin.scir).
    "scir": Method("scir", "main", False, trainer="scir"),
}

CONSISTENCY_METRICS = ("kendall", "spearman", "toporder")


def _fault_point(stage: str) -> None:
    pattern = os.environ.get(ENV_FAULT)
    if pattern and fnmatch.fnmatch(stage, pattern):
        log.warning("fault injection: killing the run inside stage %s", stage)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class _Lazy:
    """A value loaded only if the factory asks for it (a model is 0.5 GB or more)."""

    load: Callable[[], Any]


def _call_with_supported(factory: Callable[..., Any], **kwargs: Any) -> Any:
    """Call a component factory with the keyword arguments it names (all of them when it
    names none and takes ``**kwargs``); a ``_Lazy`` value is loaded only if passed."""
    from cream_plugin.rewarders import factory_parameters

    named = factory_parameters(factory)
    if named:
        kwargs = {k: v for k, v in kwargs.items() if k in named}
    return factory(**{k: v.load() if isinstance(v, _Lazy) else v for k, v in kwargs.items()})


class Pipeline:
    """Runs the configured methods for ``config.iterations`` iterations in ``run_dir``."""

    def __init__(self, config: RunConfig, run_dir: str | os.PathLike[str] | None = None) -> None:
        unknown = [m for m in config.methods if m not in METHODS]
        if unknown:
            raise ConfigError(
                f"methods: unknown method {unknown[0]!r}; known: {', '.join(METHODS)}"
            )
        self.config = config
        self._check_components()
        self.run_dir = Path(run_dir or config.output_dir)
        self.dist: DistContext = init_distributed(config.model.device)
        self._tokenizer: Any = None
        self._evaluator: Any = None
        self._models: dict[str, Any] = {}

    def _check_components(self) -> None:
        """Fail before any work when a configured component name is unknown."""
        from cream_plugin.registry import get_component

        cfg = self.config
        needed = [
            ("sampler", cfg.sampling.backend),
            ("trainer", cfg.training.trainer),
            ("evaluator", cfg.evaluation.evaluator),
            ("consistency_metric", cfg.consistency.metric),
        ]
        for method in cfg.methods:
            reward = METHODS[method].reward
            if METHODS[method].trainer:
                needed.append(("trainer", str(METHODS[method].trainer)))
            if reward:
                name = {
                    "main": cfg.rewarder.name,
                    "judge": cfg.rewarder.judge,
                    "oracle": cfg.rewarder.oracle,
                }[reward]
                if name != "implicit":
                    needed.append(("rewarder", name))
        for kind, name in needed:
            get_component(kind, name)

    # -- small helpers -------------------------------------------------------------------
    def _hash(self, *sections: str) -> str:
        return self.config.section_hash(*sections)

    def _stage(self, name: str, config_hash: str, **inputs: str) -> Stage:
        return Stage(self.run_dir, name, config_hash, inputs)

    def _on_main(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` (a write) on the main process only; every process waits until it is done."""
        if self.dist.is_main:
            fn()
        self.dist.barrier()

    def _per_device(self, batch_size: int, what: str) -> int:
        """The per-process share of a global batch size (the same optimiser steps on K ranks)."""
        world = self.dist.world_size
        if batch_size % world:
            raise ConfigError(
                f"{what}={batch_size} is not divisible by the {world} processes; "
                "the global batch must split evenly to match a single-process run"
            )
        return batch_size // world

    @staticmethod
    def _whole_batches(trainer: Any, global_batch: int) -> None:
        """Train on whole global batches only (drop the last partial one), as long as there is
        one whole batch. Under DDP accelerate pads a short last batch with repeated examples
        (``even_batches``), so a partial batch would make K processes train on other data than
        one process; with it dropped, every optimiser step sees the same examples for any K."""
        trainer.args.dataloader_drop_last = len(trainer.train_dataset) >= global_batch

    def _trainer_dir(self, name: str) -> Path:
        """A per-process scratch folder for a Trainer (hidden: removed on restart)."""
        return self.run_dir / f".{name.replace('/', '-')}.trainer-rank{self.dist.rank}"

    def reset(self) -> None:
        """Delete the run folder (``cream run --fresh``), once, before any process starts."""
        self._on_main(lambda: shutil.rmtree(self.run_dir, ignore_errors=True))

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from cream_plugin.models import load_tokenizer

            m = self.config.model
            self._tokenizer = load_tokenizer(
                m.name, gguf_file=m.gguf_file, trust_remote_code=m.trust_remote_code
            )
        return self._tokenizer

    def _model_path(self, key: str) -> str:
        return self.config.model.name if key == "M0" else str(self.run_dir / key)

    def _model_digest(self, key: str) -> str:
        if key == "M0":
            return "M0:" + self._hash("model")
        return self._stage(key, "").manifest()["digest"]  # type: ignore[index]

    def load(self, key: str) -> Any:
        """Load a model of the run (M0 = the configured base, else a checkpoint folder)."""
        from cream_plugin.models import load_model

        if key not in self._models:
            m = self.config.model
            self._release()
            self._models[key] = load_model(
                self._model_path(key),
                gguf_file=m.gguf_file if key == "M0" else None,
                dtype=m.dtype,
                device=m.device,
                trust_remote_code=m.trust_remote_code,
            )
        return self._models[key]

    def _release(self) -> None:
        """Keep at most one model in memory: 135M fp32 is 0.5 GB, a 7B model far more."""
        self._models.clear()
        gc.collect()

    # -- stages --------------------------------------------------------------------------
    def prompts(self) -> Stage:
        """The prompt pool, split between iterations without overlap."""
        from cream_plugin.prompts import build_prompt_pool

        cfg = self.config
        stage = self._stage("prompts", self._hash("data", "iterations", "seed"))
        if stage.is_complete():
            return stage
        stage.start()
        pool = build_prompt_pool(
            cfg.data.prompt_sources,
            cfg.data.data_dir,
            cfg.data.prompts_per_iteration,
            cfg.iterations,
            cfg.seed,
        )
        rows = [dict(row, iteration=t + 1) for t, chunk in enumerate(pool) for row in chunk]
        _fault_point(stage.name)
        self._on_main(lambda: stage.write_rows(rows, method="", iteration=0, step="prompts"))
        return stage

    def prompts_for(self, prompts: Stage, t: int) -> list[dict[str, Any]]:
        return [r for r in prompts.read_rows() if r["iteration"] == t]

    def sft(self) -> Stage:
        """M1: supervised fine-tuning of M0 on the seed set."""
        from cream_plugin.data import load_rows
        from cream_plugin.sft import build_sft_trainer

        cfg = self.config
        stage = self._stage(
            "M1",
            self._hash(
                "model",
                "data.sft_examples",
                "training.sft_epochs",
                "training.sft_learning_rate",
                "training.sft_batch_size",
                "training.max_length",
                "seed",
            ),
            base=self._model_digest("M0"),
        )
        if stage.is_complete():
            return stage
        stage.start()
        examples = load_rows("seed_sft", "train", cfg.data.data_dir)
        if cfg.data.sft_examples:
            rng = np.random.default_rng(cfg.seed)
            keep = sorted(rng.permutation(len(examples))[: cfg.data.sft_examples].tolist())
            examples = [examples[i] for i in keep]
        model = self.load("M0")
        tr = cfg.training
        # Every process trains (DDP inside the Trainer); only the main one saves the weights.
        scratch = self._trainer_dir(stage.name)
        trainer = build_sft_trainer(
            model,
            self.tokenizer,
            examples,
            scratch,
            epochs=tr.sft_epochs,
            learning_rate=tr.sft_learning_rate,
            batch_size=self._per_device(tr.sft_batch_size, "training.sft_batch_size"),
            max_length=tr.max_length,
            seed=cfg.seed,
            progress=self.dist.is_main,
        )
        self._whole_batches(trainer, tr.sft_batch_size)
        trainer.train()
        trained = trainer.model
        trained.eval()
        _fault_point(stage.name)
        shutil.rmtree(scratch, ignore_errors=True)

        def save_into(folder: Path) -> None:
            trained.save_pretrained(folder, safe_serialization=True)
            self.tokenizer.save_pretrained(folder)

        self._on_main(
            lambda: stage.write_folder(
                save_into, method="sft", iteration=1, step="sft", examples=len(examples)
            )
        )
        self._release()
        return stage

    def samples(self, scope: str, key: str, rows: list[dict[str, Any]], t: int) -> Stage:
        """N responses per prompt from model ``key``."""
        from cream_plugin.registry import get_component

        cfg = self.config
        stage = self._stage(
            f"{scope}/samples",
            self._hash("sampling", "seed"),
            model=self._model_digest(key),
            prompts=self._hash("data", "iterations", "seed") + f":{t}",
        )
        if stage.is_complete():
            return stage
        stage.start()
        s = cfg.sampling
        sampler = _call_with_supported(
            get_component("sampler", s.backend).obj,
            model=_Lazy(lambda: self.load(key)),
            tokenizer=self.tokenizer,
            model_path=self._model_path(key),
            temperature=s.temperature,
            top_p=s.top_p,
            max_new_tokens=s.max_new_tokens,
            batch_size=s.batch_size,
        )
        prompts = [r["prompt"] for r in rows]
        # Sharded by prompt; repeats of one prompt stay together (their seeds count repeats).
        responses = map_sharded(
            prompts,
            lambda mine: sampler.generate(mine, s.num_responses, seed=cfg.seed * 1000 + t),
            self.dist,
            group=lambda i: json.dumps(prompts[i], sort_keys=True),
        )
        empty = sum(1 for rs in responses for x in rs if not x.strip())

        def out() -> Iterator[dict[str, Any]]:
            for i, (row, resp) in enumerate(zip(rows, responses, strict=True)):
                if i == len(rows) // 2:
                    _fault_point(stage.name)
                yield {**row, "responses": resp}

        self._on_main(
            lambda: stage.write_rows(
                out(),
                method=scope.split("/")[0],
                iteration=t,
                step="sample",
                empty_responses=empty,
            )
        )
        return stage

    def logps(self, scope: str, key: str, samples: Stage, t: int) -> Stage:
        """Summed response-token log-probs of every sample under model ``key``: the implicit
        reward's terms and, for the model being trained, the DPO reference log-probs."""
        from cream_plugin.logprobs import response_logps

        stage = self._stage(
            f"{scope}/logps-{key.replace('/', '-')}",
            self._hash("rewarder.batch_size", "training.max_length"),
            samples=samples.digest,
            model=self._model_digest(key),
        )
        if stage.is_complete():
            return stage
        stage.start()
        rows = samples.read_rows()
        table = response_logps(
            self.load(key),
            self.tokenizer,
            [r["prompt"] for r in rows],
            [r["responses"] for r in rows],
            batch_size=self.config.rewarder.batch_size,
            max_length=self.config.training.max_length,
            shard=(self.dist.rank, self.dist.world_size),
        )
        if self.dist.active:  # each entry was scored by exactly one rank, the others hold 0
            parts = self.dist.gather((table.sum, table.num_tokens))
            table.sum = np.sum([p[0] for p in parts], axis=0)
            table.num_tokens = np.sum([p[1] for p in parts], axis=0)
        _fault_point(stage.name)
        self._on_main(
            lambda: stage.write_rows(
                (
                    {
                        "prompt_id": r["prompt_id"],
                        "logps": table.sum[i].tolist(),
                        "num_tokens": table.num_tokens[i].tolist(),
                    }
                    for i, r in enumerate(rows)
                ),
                method=scope.split("/")[0],
                iteration=t,
                step="logps",
                model=key,
            )
        )
        return stage

    def model_rewards(
        self, scope: str, name: str, key: str | None, samples: Stage, t: int
    ) -> Stage:
        """Rewards from a rewarder plugin (judge, oracle, third-party), using model ``key``."""
        from cream_plugin.rewarders import build_rewarder, score_rewarder

        cfg = self.config
        tag = f"{name}-{key.replace('/', '-')}" if key else name
        stage = self._stage(
            f"{scope}/rewards-{tag}",
            self._hash("rewarder", "seed"),
            samples=samples.digest,
            model=self._model_digest(key) if key else "none",
        )
        if stage.is_complete():
            return stage
        stage.start()
        rows = samples.read_rows()
        rewarder = build_rewarder(
            name,
            resources={
                "model": lambda: self.load(key) if key else None,
                "tokenizer": lambda: self.tokenizer,
                "batch_size": lambda: cfg.rewarder.batch_size,
                "seed": lambda: cfg.seed,
            },
            options=cfg.rewarder.options.get(name, {}),
        )
        counts: Counter[str] = Counter()

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

        scored = map_sharded(rows, score, self.dist)
        for _, tally in scored:
            counts.update(tally)
        _fault_point(stage.name)
        self._on_main(
            lambda: stage.write_rows(
                (
                    {"prompt_id": r["prompt_id"], "rewards": scored[i][0]}
                    for i, r in enumerate(rows)
                ),
                method=scope.split("/")[0],
                iteration=t,
                step="reward",
                counts=dict(counts),
            )
        )
        return stage

    # -- one iteration of one method -----------------------------------------------------
    def _key(self, method: str, t: int) -> str:
        """Checkpoint name of M_t for a method: M0 and M1 are shared by all methods."""
        return f"M{t}" if t <= 1 else f"{method}/M{t}"

    def _implicit_tables(
        self, scope: str, method: str, samples: Stage, t: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(r_t, r_{t-1}, log-probs under M_t) from the log-prob stages of M_t, M_{t-1}, M_{t-2}."""

        def table(key: str) -> tuple[np.ndarray, np.ndarray]:
            rows = self.logps(scope, key, samples, t).read_rows()
            return (
                np.array([r["logps"] for r in rows], dtype=np.float64),
                np.array([r["num_tokens"] for r in rows], dtype=np.float64),
            )

        cur, _ = table(self._key(method, t))
        prev, prev_tokens = table(self._key(method, t - 1))
        reward_t = cur - prev
        if t - 1 == 0:  # M0 has no reference: mean per-token log-likelihood
            reward_prev = prev / np.maximum(prev_tokens, 1.0)
        else:
            reward_prev = prev - table(self._key(method, t - 2))[0]
        return reward_t, reward_prev, cur

    def iteration(self, method: str, t: int, prompts: Stage) -> str:
        """Run iteration t of ``method``: M_t -> M_{t+1}; returns M_{t+1}'s key."""
        from cream_plugin.pairs import build_pairs

        cfg = self.config
        spec = METHODS[method]
        key = self._key(method, t)
        # Iteration 1 depends only on M1, so methods with the same reward share its stages.
        scope = "shared/iter1" if t == 1 else f"{method}/iter{t}"
        samples = self.samples(
            scope if t > 1 else "shared/iter1", key, self.prompts_for(prompts, t), t
        )
        rows = samples.read_rows()
        reward_name = {
            "main": cfg.rewarder.name,
            "judge": cfg.rewarder.judge,
            "oracle": cfg.rewarder.oracle,
        }[spec.reward or "main"]
        ref_logps = None
        prev: np.ndarray | None = None
        if reward_name == "implicit":
            rewards, prev, cur = self._implicit_tables(scope, method, samples, t)
            inputs = {"logps": samples.digest + ":implicit"}
            ref_logps = cur
        else:
            from cream_plugin.registry import get_component
            from cream_plugin.rewarders import factory_parameters

            needs_model = "model" in factory_parameters(get_component("rewarder", reward_name).obj)
            r_stage = self.model_rewards(
                f"{method}/iter{t}" if t > 1 else scope,
                reward_name,
                key if needs_model else None,
                samples,
                t,
            )
            rewards = np.array([r["rewards"] for r in r_stage.read_rows()], dtype=np.float64)
            inputs = {"rewards": r_stage.digest}
            if spec.regularised:
                p_stage = self.model_rewards(
                    scope,
                    reward_name,
                    self._key(method, t - 1) if needs_model else None,
                    samples,
                    t,
                )
                prev = np.array([r["rewards"] for r in p_stage.read_rows()], dtype=np.float64)
                inputs["prev"] = p_stage.digest

        ids = [r["prompt_id"] for r in rows]
        c_map = None
        pair_inputs = dict(inputs)
        if prev is not None:
            c_map = self.consistency(method, t, rewards, prev, ids, inputs)
            pair_inputs["consistency"] = self._consistency_stage(method, t, inputs).digest
        pairs_stage = self._stage(
            f"{method}/iter{t}/pairs",
            self._hash("consistency", "rewarder"),
            samples=samples.digest,
            **pair_inputs,
        )
        if not pairs_stage.is_complete():
            pairs_stage.start()
            from cream_plugin.logprobs import SequenceLogProbs

            ref = None
            if ref_logps is not None:
                ref = SequenceLogProbs(
                    sum=ref_logps, num_tokens=np.ones_like(ref_logps, dtype=np.int64)
                )
            pairs = build_pairs(
                ids,
                [r["prompt"] for r in rows],
                [r["responses"] for r in rows],
                rewards,
                c_map if spec.regularised else None,
                ref_logps=ref,
            )
            _fault_point(pairs_stage.name)
            self._on_main(
                lambda: pairs_stage.write_rows(
                    pairs,
                    method=method,
                    iteration=t,
                    step="pairs",
                    prompts=len(rows),
                    skipped=len(rows) - len(pairs),
                )
            )
        if spec.trainer == "scir" and reward_name == "implicit":
            self.internal_consistency(method, t, key, pairs_stage)
        return self.train(method, t, key, pairs_stage)

    def internal_consistency(self, method: str, t: int, key: str, pairs_stage: Stage) -> Stage:
        """SCIR's quantity (its Figure 2): how often M_t's two internal reward models agree on
        the iteration's pairs. The implicit one is r_t = log pi_t - log pi_{t-1} (the reward that
        ranked the responses, so P_dpo > 0.5 for every pair); the generative one is M_t judging
        the pair in both orders. Reported as ``scir_C`` beside CREAM's cross-iteration C."""
        from cream_plugin.scir import internal_consistency

        stage = self._stage(
            f"{method}/iter{t}/internal-consistency",
            self._hash("training.beta", "training.max_length", "rewarder.batch_size"),
            pairs=pairs_stage.digest,
            model=self._model_digest(key),
        )
        if stage.is_complete():
            return stage
        stage.start()
        pairs = pairs_stage.read_rows()

        def measure() -> None:
            # pairs carry ref = log pi_t and reward = log pi_t - log pi_{t-1}: recover pi_{t-1}.
            result = internal_consistency(
                self.load(key),
                self.tokenizer,
                pairs,
                beta=self.config.training.beta,
                ref_chosen_logps=[p["ref_chosen_logps"] - p["chosen_reward"] for p in pairs],
                ref_rejected_logps=[p["ref_rejected_logps"] - p["rejected_reward"] for p in pairs],
                batch_size=self.config.rewarder.batch_size,
                max_length=self.config.training.max_length,
            )
            _fault_point(stage.name)
            summary = {"scir_C": {"mean": result["rate"], "std": None, "n": result["n"]}}
            stage.write_rows(
                [dict(result)], method=method, iteration=t, step="consistency", summary=summary
            )

        self._on_main(measure)
        return stage

    def consistency(
        self,
        method: str,
        t: int,
        rewards: np.ndarray,
        prev: np.ndarray,
        ids: list[str],
        inputs: dict[str, str],
    ) -> dict[str, float]:
        """C per prompt (the configured metric, M_t vs M_{t-1}) for the pairs, plus the paper's
        analysis statistics (C, Kendall tau, Spearman rho, TopOrder) for the report."""
        from cream_plugin.consistency import consistency_rate

        rate = consistency_rate(rewards, prev, metric=self.config.consistency.metric)
        stats = {
            m: consistency_rate(rewards, prev, metric=m).statistic for m in CONSISTENCY_METRICS
        }
        stage = self._consistency_stage(method, t, inputs)
        if not stage.is_complete():
            stage.start()
            summary = {"C": {"mean": rate.mean, "std": rate.std, "n": int(rate.defined.sum())}}
            for m, values in stats.items():
                ok = values[np.isfinite(values)]
                summary[m] = {
                    "mean": float(ok.mean()) if ok.size else float("nan"),
                    "std": float(ok.std()) if ok.size else float("nan"),
                    "n": int(ok.size),
                }
            _fault_point(stage.name)
            self._on_main(
                lambda: stage.write_rows(
                    (
                        {
                            "prompt_id": pid,
                            "C": float(rate.per_prompt[i]),
                            **{m: float(stats[m][i]) for m in stats},
                        }
                        for i, pid in enumerate(ids)
                    ),
                    method=method,
                    iteration=t,
                    step="consistency",
                    summary=summary,
                )
            )
        # The pairs read C from the artifact, joined by prompt id (what the report shows).
        return {str(r["prompt_id"]): float(r["C"]) for r in stage.read_rows()}

    def _consistency_stage(self, method: str, t: int, inputs: dict[str, str]) -> Stage:
        return self._stage(
            f"{method}/iter{t}/consistency", self._hash("consistency.metric"), **inputs
        )

    def train(self, method: str, t: int, key: str, pairs_stage: Stage) -> str:
        """Preference training of M_t on the pairs -> M_{t+1} (a safetensors checkpoint)."""
        from datasets import Dataset

        from cream_plugin.registry import get_trainer

        cfg = self.config
        spec = METHODS[method]
        new_key = self._key(method, t + 1)
        stage = self._stage(
            new_key,
            self._hash("training", "consistency", "seed", *(["scir"] if spec.trainer else [])),
            pairs=pairs_stage.digest,
            base=self._model_digest(key),
        )
        if stage.is_complete():
            return new_key
        stage.start()
        pairs = pairs_stage.read_rows()
        trainer_cls, config_cls = get_trainer(spec.trainer or cfg.training.trainer)
        mode = cfg.consistency.mode if spec.regularised else "none"
        tr = cfg.training

        # Every process trains (TRL's DDP); only the main one saves the checkpoint.
        model = self.load(key)
        scratch = self._trainer_dir(new_key)
        log_history: list[dict[str, Any]] = []
        if not pairs:
            log.warning("%s iteration %d: no preference pairs; M%d = M%d", method, t, t + 1, t)
        else:
            fields = {f for f in getattr(config_cls, "__dataclass_fields__", {})}
            kwargs: dict[str, Any] = dict(
                output_dir=str(scratch),
                beta=tr.beta,
                learning_rate=tr.learning_rate,
                num_train_epochs=tr.num_epochs,
                warmup_ratio=tr.warmup_ratio,
                per_device_train_batch_size=self._per_device(tr.batch_size, "training.batch_size"),
                gradient_accumulation_steps=tr.gradient_accumulation_steps,
                max_length=tr.max_length,
                seed=cfg.seed,
                data_seed=cfg.seed,
                report_to="none",
                save_strategy="no",
                logging_steps=1,
                disable_tqdm=not self.dist.is_main,
                use_cpu=str(model.device) == "cpu",
                bf16=False,
            )
            if "consistency_mode" in fields:
                kwargs["consistency_mode"] = mode
            if spec.trainer == "scir":
                kwargs.update(dataclasses.asdict(cfg.scir))
            kwargs = {k: v for k, v in kwargs.items() if k in fields}
            has_ref = "ref_chosen_logps" in pairs[0]
            columns = ["prompt", "chosen", "rejected", "consistency"]
            if has_ref:
                columns += ["ref_chosen_logps", "ref_rejected_logps"]
            dataset = Dataset.from_list([{c: p[c] for c in columns} for p in pairs])
            ref_model = None
            if not has_ref:
                import copy

                ref_model = copy.deepcopy(model).eval()
            trainer = trainer_cls(
                model=model,
                ref_model=ref_model,
                args=config_cls(**kwargs),
                train_dataset=dataset,
                processing_class=self.tokenizer,
            )
            self._whole_batches(trainer, tr.batch_size)
            trainer.train()
            model = trainer.model
            log_history = trainer.state.log_history
            _fault_point(stage.name)
        shutil.rmtree(scratch, ignore_errors=True)

        def save_into(folder: Path) -> None:
            model.save_pretrained(folder, safe_serialization=True)
            self.tokenizer.save_pretrained(folder)
            if pairs:
                # The log lives beside the checkpoint so it survives pruning of the weights.
                log_path = self.run_dir / f"{new_key}.train_log.json"
                log_path.write_text(json.dumps(log_history, indent=1))

        self._on_main(
            lambda: stage.write_folder(
                save_into, method=method, iteration=t, step="train", pairs=len(pairs), mode=mode
            )
        )
        self._release()
        return new_key

    # -- evaluation ----------------------------------------------------------------------
    @property
    def evaluator(self) -> Any:
        """One evaluator for the run, so lm-eval indexes its tasks once."""
        if self._evaluator is None:
            from cream_plugin.registry import get_component

            e = self.config.evaluation
            extra = {"generation_limit": e.generation_limit} if e.generation_limit else {}
            self._evaluator = _call_with_supported(
                get_component("evaluator", e.evaluator).obj,
                tasks=e.tasks,
                limit=e.limit,
                batch_size=e.batch_size,
                num_fewshot=e.num_fewshot,
                data_dir=self.config.data.data_dir,
                decode_loop=e.decode_loop,
                **extra,
            )
        return self._evaluator

    def evaluate(self, method: str, t: int, key: str) -> None:
        """Score M_t on the benchmarks; rows go to the run's results table."""
        from cream_plugin.results import append_results

        stage = self._stage(
            f"evals/{method}-M{t}", self._hash("evaluation"), model=self._model_digest(key)
        )
        if stage.is_complete():
            self._on_main(lambda: append_results(self.run_dir, stage.read_rows()))
            return

        def score() -> None:  # main process only: see the module docstring
            stage.start()
            started = time.perf_counter()
            e = self.config.evaluation
            options = {"gen_kwargs": {"max_gen_toks": e.max_gen_toks}} if e.max_gen_toks else {}
            rows = self.evaluator.evaluate(self.load(key), self.tokenizer, **options)
            seconds = round(time.perf_counter() - started, 3)
            rows = [
                {"method": method, "iteration": t, "limit": e.limit, "seconds": seconds, **r}
                for r in rows
            ]
            _fault_point(stage.name)
            stage.write_rows(rows, method=method, iteration=t, step="evaluate")
            append_results(self.run_dir, stage.read_rows())

        self._on_main(score)

    # -- the whole run -------------------------------------------------------------------
    def _clean_leftovers(self) -> None:
        """Remove temporary files and folders a killed run left behind (never complete ones)."""
        if not self.run_dir.is_dir():
            return
        for path in list(self.run_dir.rglob(".*")):
            if path.name.endswith(".tmp") and path.is_file():
                path.unlink(missing_ok=True)
            elif path.is_dir() and path.name.startswith("."):
                shutil.rmtree(path, ignore_errors=True)

    def run(self) -> Path:
        """Run every configured method; returns the run folder (report included)."""
        from cream_plugin.report import write_report

        cfg = self.config

        def prepare() -> None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._clean_leftovers()
            (self.run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

        self._on_main(prepare)
        prompts = self.prompts()
        self.sft()
        self.evaluate("sft", 1, "M1")
        finals: set[str] = {"M1"}
        for method in cfg.methods:
            if METHODS[method].reward is None:
                continue
            key = "M1"
            for t in range(1, cfg.iterations + 1):
                key = self.iteration(method, t, prompts)
                self.evaluate(method, t + 1, key)
            finals.add(key)
        keep = finals | {self._key(m, t) for m in cfg.methods for t in cfg.keep_checkpoints}

        def finish() -> None:
            prune_checkpoints(self.run_dir, keep)
            self._write_tables()
            write_report(self.run_dir)

        self._on_main(finish)
        return self.run_dir

    def _write_tables(self) -> None:
        """consistency.jsonl and timings.jsonl for the report, rebuilt from the manifests."""
        consistency, timings = [], []
        for path in sorted(self.run_dir.rglob("*.manifest.json")):
            m = json.loads(path.read_text())
            if "step" not in m:
                continue
            timings.append(
                {
                    "method": {"": "(all)", "shared": "(shared)"}.get(
                        m.get("method", ""), m.get("method")
                    ),
                    "iteration": m.get("iteration", 0),
                    "stage": m["step"],
                    "name": m["stage"],
                    "seconds": m["seconds"],
                }
            )
            if m["step"] == "consistency":
                for metric, s in m["summary"].items():
                    consistency.append(
                        {"method": m["method"], "iteration": m["iteration"], "metric": metric, **s}
                    )
        from cream_plugin.artifacts import atomic_write_text

        for name, rows in (("consistency.jsonl", consistency), ("timings.jsonl", timings)):
            atomic_write_text(self.run_dir / name, "".join(json.dumps(r) + "\n" for r in rows))
