"""C per prompt (the configured metric, M_t's rewards against M_{t-1}'s) with the paper's
analysis statistics (C, Kendall tau, Spearman rho, TopOrder) in the manifest's summary."""

from __future__ import annotations

from typing import Any

import numpy as np

from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec

ANALYSIS_METRICS = ("kendall", "spearman", "toporder")


def consistency_rows(
    rewards: np.ndarray, previous: np.ndarray, ids: list[str], metric: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per prompt (C and every analysis statistic) and the summary for the report."""
    from cream_plugin.ranking.consistency import consistency_rate

    rate = consistency_rate(rewards, previous, metric=metric)
    stats = {m: consistency_rate(rewards, previous, metric=m).statistic for m in ANALYSIS_METRICS}
    summary: dict[str, Any] = {
        "C": {"mean": rate.mean, "std": rate.std, "n": int(rate.defined.sum())}
    }
    for m, values in stats.items():
        ok = values[np.isfinite(values)]
        summary[m] = {
            "mean": float(ok.mean()) if ok.size else float("nan"),
            "std": float(ok.std()) if ok.size else float("nan"),
            "n": int(ok.size),
        }
    rows = [
        {"prompt_id": pid, "C": float(rate.per_prompt[i]), **{m: float(stats[m][i]) for m in stats}}
        for i, pid in enumerate(ids)
    ]
    return rows, summary


class ConsistencyStage(StageSpec):
    step = "consistency"
    parallel = Parallel.REPLICATED
    settings = ("consistency.metric",)

    def __init__(self, method: str, iteration: int, rewards: StageSpec,
                 previous: StageSpec) -> None:
        super().__init__(f"{method}/iter{iteration}/consistency", method, iteration)
        self.rewards = rewards
        self.previous = previous

    def upstream(self) -> dict[str, Any]:
        return {"rewards": self.rewards, "prev": self.previous}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.loop.stages.rewards import rewards_table

        current = ctx.result(self.rewards)
        ids = [r["prompt_id"] for r in current.read_rows()]
        rows, summary = consistency_rows(
            rewards_table(current), rewards_table(ctx.result(self.previous)), ids,
            ctx.config.consistency.metric,
        )
        return Output(rows=rows, manifest={"summary": summary})
