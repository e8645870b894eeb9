"""N responses per prompt from one model, seeded per row (sharded by prompt)."""

from __future__ import annotations

import json
from typing import Any

from cream_plugin.loop.context import RunContext
from cream_plugin.loop.distributed import DistContext, map_sharded
from cream_plugin.loop.stage import Output, Parallel, StageSpec


def sample_responses(
    sampler: Any, prompts: list[Any], n: int, seed: int, dist: DistContext | None = None
) -> list[list[str]]:
    """``n`` responses per prompt; repeats of one prompt stay on one process (their seeds
    count repeats), so the result does not depend on the number of processes."""
    return map_sharded(
        prompts,
        lambda mine: sampler.generate(mine, n, seed=seed),
        dist or DistContext(),
        group=lambda i: json.dumps(prompts[i], sort_keys=True),
    )


def sampling_seed(seed: int, iteration: int) -> int:
    return seed * 1000 + iteration


class SampleStage(StageSpec):
    step = "sample"
    parallel = Parallel.SHARDED
    settings = ("sampling", "seed")

    def __init__(self, scope: str, model_key: str, prompts: StageSpec, iteration: int, *,
                 num_responses: int | None = None, temperature: float | None = None) -> None:
        """``num_responses`` and ``temperature`` (0: greedy) override ``sampling`` for this
        stage (a method's own decoding, e.g. spin's one response per prompt)."""
        super().__init__(f"{scope}/samples", method=scope.split("/")[0], iteration=iteration)
        self.model_key = model_key
        self.prompts = prompts
        self.num_responses = num_responses
        self.temperature = temperature

    def decoding(self) -> dict[str, float]:
        """The overrides of the ``sampling`` settings (empty for the run's own decoding)."""
        given = {"num_responses": self.num_responses, "temperature": self.temperature}
        return {k: v for k, v in given.items() if v is not None}

    def upstream(self) -> dict[str, Any]:
        return {"prompts": self.prompts}

    def models(self) -> tuple[str, ...]:
        return (self.model_key,)

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        found = {
            "model": ctx.model_digest(self.model_key),
            "prompts": f"{ctx.result(self.prompts).digest}:{self.iteration}",
        }
        if self.decoding():  # only then: the run's own decoding keeps its identity
            found["decoding"] = json.dumps(self.decoding(), sort_keys=True)
        return found

    @staticmethod
    def _main_only(ctx: RunContext) -> bool:
        from cream_plugin.plugins.registry import get_component

        component = get_component("sampler", ctx.config.sampling.backend)
        return bool(component.extra.get("main_process_only")) and ctx.dist.active

    def _samples_here(self, ctx: RunContext) -> bool:
        return ctx.dist.is_main or not self._main_only(ctx)

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.plugins.registry import get_component

        s = ctx.config.sampling
        key = self.model_key
        temperature = s.temperature if self.temperature is None else self.temperature
        n = self.num_responses or s.num_responses
        mine = [r for r in ctx.result(self.prompts).read_rows() if r["iteration"] == self.iteration]
        # A sampler registered with vllm_engine=True gets the run's open engine on this model
        # as its model_path (started here, or left open by this model's evaluation).
        shared = bool(get_component("sampler", s.backend).extra.get("vllm_engine"))
        engine_start: list[float] = []

        def model_path() -> Any:
            if not shared:
                return ctx.model_path(key)
            engine, paid = ctx.vllm_engine(key)
            engine_start.append(paid)
            return engine

        sampler = ctx.component(
            "sampler",
            s.backend,
            {
                "model": lambda: ctx.load(key),
                "tokenizer": lambda: ctx.tokenizer,
                "model_path": model_path,
                "temperature": lambda: temperature,
                "top_p": lambda: s.top_p,
                "max_new_tokens": lambda: s.max_new_tokens,
                "batch_size": lambda: s.batch_size,
                "seed": lambda: ctx.config.seed,
                "dtype": lambda: ctx.config.model.dtype,
            },
        ) if self._samples_here(ctx) else None
        responses: list[list[str]] = []
        try:
            if sampler is not None:
                responses = sample_responses(
                    sampler,
                    [r["prompt"] for r in mine],
                    n,
                    sampling_seed(ctx.config.seed, self.iteration),
                    None if self._main_only(ctx) else ctx.dist,
                )
        finally:
            close = getattr(sampler, "close", None)
            if callable(close):
                close()
        if self._main_only(ctx):  # an engine that spawns its own workers runs on one process
            responses = ctx.dist.broadcast(responses)
        empty = sum(1 for rs in responses for x in rs if not x.strip())
        manifest: dict[str, Any] = {"empty_responses": empty}
        start = sum(engine_start) if engine_start else getattr(sampler, "start_seconds", None)
        if start is not None:  # 0 where the engine was already open
            manifest["engine_start_seconds"] = round(float(start), 3)
        rows = [{**row, "responses": resp} for row, resp in zip(mine, responses, strict=True)]
        return Output(rows=rows, manifest=manifest)
