"""How far M_t moved to M_{t+1}: the exact per-token KL in both directions (from the exact-KL
stage), the MC log-ratios and mean |delta log-prob| on the samples of each model (from the run's
log-prob artifacts), with the DPO margins and reward accuracies of the training log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec
from cream_plugin.loop.stages.logps import logps_table


class MovementStage(StageSpec):
    """``on_old``: (M_t's, M_{t+1}'s) log-prob stages of iteration t's samples (from M_t);
    ``on_new``: (M_{t+1}'s, M_t's) log-prob stages of iteration t+1's samples. At least one.
    ``old_samples``: iteration t's samples stage, whose responses are counted in tokens (as DPO
    counts them) for M_t's mean length when ``on_old`` is not given. ``kl``: the exact-KL stage,
    on the samples ``kl_on`` names."""

    step = "movement"
    parallel = Parallel.REPLICATED

    def __init__(self, method: str, iteration: int, on_old: tuple[StageSpec, StageSpec] | None,
                 on_new: tuple[StageSpec, StageSpec] | None, train_log: Path,
                 old_samples: StageSpec | None = None, kl: StageSpec | None = None,
                 kl_on: str = "") -> None:
        super().__init__(f"{method}/iter{iteration}/movement", method, iteration)
        self.on_old = on_old
        self.on_new = on_new
        self.train_log = train_log
        self.old_samples = old_samples if on_old is None else None
        self.kl, self.kl_on = kl, kl_on

    def upstream(self) -> dict[str, Any]:
        return {"old": self.on_old, "new": self.on_new, "old_samples": self.old_samples,
                "kl": self.kl}

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.instruments.estimate import undefined
        from cream_plugin.instruments.evidence import Evidence, MovementRow
        from cream_plugin.instruments.movement import policy_movement
        from cream_plugin.instruments.train_log import curve_mean, train_curves

        kwargs: dict[str, Any] = {}
        if self.on_old is not None:
            old_on_old = logps_table(ctx.result(self.on_old[0]).read_rows())
            new_on_old = logps_table(ctx.result(self.on_old[1]).read_rows())
            kwargs |= {
                "old_on_old": old_on_old.sum,
                "new_on_old": new_on_old.sum,
                "tokens_old": old_on_old.num_tokens,
            }
        if self.on_new is not None:
            new_on_new = logps_table(ctx.result(self.on_new[0]).read_rows())
            old_on_new = logps_table(ctx.result(self.on_new[1]).read_rows())
            kwargs |= {
                "new_on_new": new_on_new.sum,
                "old_on_new": old_on_new.sum,
                "tokens_new": new_on_new.num_tokens,
            }
        if self.old_samples is not None:
            old_rows = ctx.result(self.old_samples).read_rows()
            kwargs["lengths_old"] = response_token_counts(ctx, old_rows)
        if self.kl is not None:
            kl_rows = ctx.result(self.kl).read_rows()
            kwargs |= {name: [r[name] for r in kl_rows]
                       for name in ("kl_forward", "kl_reverse")}
            kwargs |= {"kl_tokens": [r["num_tokens"] for r in kl_rows], "kl_on": self.kl_on}
        movement = policy_movement(**kwargs, seed=ctx.config.seed)
        if self.train_log.is_file():
            curves = train_curves(self.train_log)
            margins = curve_mean(curves, "rewards/margins")
            accuracies = curve_mean(curves, "rewards/accuracies")
        else:
            margins = accuracies = undefined("no training log (no pairs)")
        evidence = Evidence(
            movement=[MovementRow(self.method, self.iteration, movement, margins, accuracies)]
        )
        return Output(rows=[{"evidence": evidence.to_dict()}])


def response_token_counts(ctx: RunContext, rows: list[dict[str, Any]]) -> Any:
    """(prompts, responses) token counts of a samples stage's responses, as the log-prob stage
    counts them (the completion tokens DPO trains on, cut at ``training.max_length``)."""
    import numpy as np

    from cream_plugin.forward.logprobs import scored_sequence, tokenize_prompt

    max_length = ctx.config.training.max_length
    counts = []
    for row in rows:
        prompt_ids = tokenize_prompt(ctx.tokenizer, row["prompt"])
        found = []
        for response in row["responses"]:
            ids, start = scored_sequence(ctx.tokenizer, row["prompt"], response, prompt_ids,
                                         max_length)
            found.append(len(ids) - start)
        counts.append(found)
    return np.array(counts, dtype=np.int64)
