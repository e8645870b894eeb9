"""Benchmark scores of one model (lm-eval), on the main process only.

lm-eval's HFLM treats an in-memory model as single-process, and splitting the tasks across
processes would change lm-eval's cross-task batching, so scores could differ from a
single-process run. Rows carry the evaluation settings' hash (``eval_settings``): the results
table keeps rows of different settings apart, so limits never mix in one table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec


def evaluator_resources(ctx: RunContext) -> dict[str, Any]:
    e = ctx.config.evaluation
    resources: dict[str, Any] = {
        "tasks": lambda: e.tasks,
        "limit": lambda: e.limit,
        "batch_size": lambda: e.batch_size,
        "num_fewshot": lambda: e.num_fewshot,
        "data_dir": lambda: ctx.config.data.data_dir,
        "decode_loop": lambda: e.decode_loop,
        # With a limit, each seed scores its own seeded sample of every task's items.
        "item_seed": lambda: ctx.config.seed,
    }
    if e.generation_limit:
        resources["generation_limit"] = lambda: e.generation_limit
    return resources


OPEN_POOL_PREFIXES = ("cream_open_", "_cream_open_", "open_utils")
"""Files of the open-question tasks: a digest of their own (``open_tasks_code_digest``), an
input only of evaluations that run those tasks, so adding them changed no other stage."""


def _is_open_pool(path: Path) -> bool:
    return path.name.startswith(OPEN_POOL_PREFIXES)


def tasks_code_digest(folder: Path | None = None) -> str:
    """The task YAMLs and ``utils.py`` are code the scores depend on (the open pool apart)."""
    from cream_plugin.evaluators import TASKS_PATH
    from cream_plugin.loop.identity import files_digest

    root = Path(folder or TASKS_PATH)
    return files_digest([p for p in root.rglob("*") if p.is_file() and not _is_open_pool(p)],
                        root)


def open_tasks_code_digest(folder: Path | None = None) -> str:
    """The open-question tasks' files (YAMLs and ``open_utils.py``)."""
    from cream_plugin.evaluators import TASKS_PATH
    from cream_plugin.loop.identity import files_digest

    root = Path(folder or TASKS_PATH)
    return files_digest([p for p in root.rglob("*") if p.is_file() and _is_open_pool(p)], root)


def runs_open_tasks(tasks: list[str]) -> bool:
    return any(name.startswith(("cream_open_", "_cream_open_")) for name in tasks)


ITEM = "item"
"""``kind`` of an evaluation row holding one benchmark item's scores (lm-eval log_samples)."""


def metric_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The aggregate rows of an evaluation artifact (the results table's rows)."""
    return [r for r in rows if r.get("kind") != ITEM]


def item_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-item rows of an evaluation artifact (paired tests between models)."""
    return [r for r in rows if r.get("kind") == ITEM]


class EvaluateStage(StageSpec):
    step = "evaluate"
    parallel = Parallel.MAIN
    version = 3  # with a limit, a seeded sample of items (the manifest lists them)
    settings = ("evaluation", "seed")

    def __init__(self, method: str, iteration: int, model_key: str) -> None:
        super().__init__(f"evals/{method}-M{iteration}", method, iteration)
        self.model_key = model_key

    def models(self) -> tuple[str, ...]:
        return (self.model_key,)

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        from cream_plugin.loop.identity import evaluation_data_digest

        inputs = {
            "model": ctx.model_digest(self.model_key),
            "data": evaluation_data_digest(ctx.config.data.data_dir),
            "tasks": tasks_code_digest(),
        }
        if runs_open_tasks(ctx.config.evaluation.tasks):
            inputs["open_tasks"] = open_tasks_code_digest()
        return inputs

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.plugins.registry import get_component

        e = ctx.config.evaluation
        started = time.perf_counter()
        takes_path = bool(get_component("evaluator", e.evaluator).extra.get("takes_path"))
        evaluator = ctx.component("evaluator", e.evaluator, evaluator_resources(ctx))
        engine_start: float | None = None
        if getattr(evaluator, "takes_vllm_engine", False):
            # Scores on the run's engine on this model, left open for sampling from it.
            model, engine_start = ctx.vllm_engine(self.model_key)
        else:
            model = ctx.model_path(self.model_key) if takes_path else ctx.load(self.model_key)
        options: dict[str, Any] = (
            {"gen_kwargs": {"max_gen_toks": e.max_gen_toks}} if e.max_gen_toks else {}
        )
        items: list[dict[str, Any]] = []
        if getattr(evaluator, "keeps_items", False):
            options["items"] = items
        try:
            rows = evaluator.evaluate(model, None if takes_path else ctx.tokenizer, **options)
        finally:
            close = getattr(evaluator, "close", None)
            if callable(close):
                close()
        seconds = round(time.perf_counter() - started, 3)
        settings = ctx.config.section_hash("evaluation")
        out = [
            {
                "method": self.method,
                "iteration": self.iteration,
                "limit": e.limit,
                "eval_settings": settings,
                "seconds": seconds,
                **r,
            }
            for r in rows
        ]
        out += [{"kind": ITEM, "method": self.method, "iteration": self.iteration, **i}
                for i in items]
        start = engine_start if engine_start is not None else getattr(evaluator,
                                                                      "start_seconds", None)
        manifest: dict[str, Any] = ({} if start is None
                                    else {"engine_start_seconds": round(float(start), 3)})
        chosen = getattr(evaluator, "chosen_items", None)
        if chosen:
            manifest["items"] = chosen
        return Output(rows=out, manifest=manifest)
