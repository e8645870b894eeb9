"""The prompt pool, split between iterations without overlap (seeded)."""

from __future__ import annotations

from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec


def pool_rows(
    sources: list[str], data_dir: str | None, per_iteration: int, iterations: int, seed: int
) -> list[dict[str, Any]]:
    """Every prompt of the run, each tagged with the iteration (1-based) that uses it."""
    from cream_plugin.loop.prompt_pool import build_prompt_pool

    pool = build_prompt_pool(sources, data_dir, per_iteration, iterations, seed)
    return [dict(row, iteration=t + 1) for t, chunk in enumerate(pool) for row in chunk]


class PromptsStage(StageSpec):
    step = "prompts"
    parallel = Parallel.REPLICATED
    settings = ("data", "iterations", "seed")

    def __init__(self) -> None:
        super().__init__("prompts")

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        from cream_plugin.loop.identity import data_digest

        d = ctx.config.data
        return {"data": data_digest([(s, "train") for s in d.prompt_sources], d.data_dir)}

    def compute(self, ctx: RunContext) -> Output:
        cfg = ctx.config
        d = cfg.data
        rows = pool_rows(
            d.prompt_sources, d.data_dir, d.prompts_per_iteration, cfg.iterations, cfg.seed
        )
        return Output(rows=rows)


class AfterLastPromptsStage(PromptsStage):
    """Iteration T+1's prompts for ``consistency.after_last``: the chunk of the pool that a run
    of T+1 iterations would use last. The pool is drawn so that its first T chunks do not
    depend on how many follow (:func:`cream_plugin.loop.prompt_pool.build_prompt_pool`), so
    these prompts are disjoint from every prompt the run trained on; the run's own prompts
    stage is left as it was."""

    step = "prompts"

    def __init__(self) -> None:
        StageSpec.__init__(self, "prompts-after-last")

    def compute(self, ctx: RunContext) -> Output:
        cfg = ctx.config
        d = cfg.data
        last = cfg.iterations + 1
        try:
            rows = pool_rows(d.prompt_sources, d.data_dir, d.prompts_per_iteration, last,
                             cfg.seed)
        except DataError as exc:
            raise DataError(f"consistency.after_last needs the prompts of iteration {last}: "
                            f"{exc}") from None
        return Output(rows=[r for r in rows if r["iteration"] == last])
