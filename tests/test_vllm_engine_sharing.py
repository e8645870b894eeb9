"""One vLLM engine per checkpoint and iteration, shared by evaluation and sampling (no vLLM).

The stages run through the runner in the pipeline's order (evaluate M_t, sample from M_t,
train M_t -> M_t+1) on a fake context whose engine factory counts starts and closes; the
sampler and evaluator are test plugins registered like the vllm ones. The real engines are
covered by tests/test_vllm_pipeline.py in .venv-vllm.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from cream_plugin.config import load_config
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.distributed import DistContext
from cream_plugin.loop.runner import Runner
from cream_plugin.loop.stage import given_rows
from cream_plugin.loop.stages.evaluate import EvaluateStage
from cream_plugin.loop.stages.sample import SampleStage
from cream_plugin.loop.stages.train import TrainStage
from cream_plugin.plugins.hookspecs import hookimpl


class FakeEngine:
    """Stands for VLLMEngine: records its start and close in the shared event log."""

    def __init__(self, events: list[tuple[str, str]], path: str, **options: Any) -> None:
        self.events = events
        self.model_path = path
        self.options = options
        self.start_seconds = 2.5
        self.closed = False
        events.append(("start", path))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.events.append(("close", self.model_path))


class FakeContext(RunContext):
    """Checkpoints are keys and fixed digests (the models are built by ``load_model`` below)."""

    def __init__(self, run_dir: Path, tokenizer: Any) -> None:
        config = load_config(overrides=["sampling.backend=fake-vllm", "sampling.num_responses=2",
                                        "evaluation.evaluator=fake-vllm"])
        super().__init__(config, run_dir, DistContext())
        self.__dict__["tokenizer"] = tokenizer
        self.events: list[tuple[str, str]] = []
        self.engine_factory = lambda path, **options: FakeEngine(self.events, path, **options)

    def model_digest(self, key: str) -> str:
        return f"fake:{key}"

    def model_path(self, key: str) -> str:
        return key


class FakeSampler:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def generate(self, prompts: list[Any], n: int, *, seed: int) -> list[list[str]]:
        assert not self.engine.closed
        self.engine.events.append(("sample", self.engine.model_path))
        return [[f"answer {i}" for i in range(n)] for _ in prompts]


class FakeEvaluator:
    takes_vllm_engine = True

    def __init__(self, **config: Any) -> None:
        self.config = config

    def evaluate(self, engine: FakeEngine, tokenizer: Any = None,
                 **options: Any) -> list[dict[str, Any]]:
        assert not engine.closed and tokenizer is None
        engine.events.append(("evaluate", engine.model_path))
        return [{"task": "fake", "metric": "acc", "value": 1.0}]


def _plugin() -> types.ModuleType:
    module = types.ModuleType("cream_fake_vllm_plugin")

    @hookimpl
    def register_samplers(register: Any) -> None:
        register("fake-vllm", lambda model_path: FakeSampler(model_path),
                 main_process_only=True, vllm_engine=True)

    @hookimpl
    def register_evaluators(register: Any) -> None:
        register("fake-vllm", FakeEvaluator, takes_path=True)

    module.register_samplers = register_samplers  # type: ignore[attr-defined]
    module.register_evaluators = register_evaluators  # type: ignore[attr-defined]
    return module


@pytest.fixture
def ctx(fresh_plugins, tmp_path, tiny_tokenizer, data_dir, monkeypatch) -> FakeContext:
    from cream_plugin.testing import add_test_plugin, build_tiny_model

    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    add_test_plugin(_plugin(), "fake-vllm")
    context = FakeContext(tmp_path, tiny_tokenizer)

    def load_model(path: str, **options: Any) -> Any:  # RunContext.load's loader
        context.events.append(("load", path))
        return build_tiny_model(tiny_tokenizer)

    monkeypatch.setattr("cream_plugin.forward.models.load_model", load_model)
    return context


ROWS = [{"prompt_id": f"p{i}", "prompt": q, "iteration": 1}
        for i, q in enumerate(["Name a prime.", "Give me a fruit."])]


def no_pairs(runner: Runner, t: int) -> Any:
    """An empty pairs result: training then saves M_t as M_t+1 after loading it."""
    pairs = given_rows(f"cream/iter{t}/pairs", [])
    runner.run(pairs)
    return pairs


def test_one_engine_per_checkpoint_across_evaluate_and_sample(ctx) -> None:
    runner = Runner(ctx)
    prompts = given_rows("prompts", ROWS + [{**r, "iteration": 2} for r in ROWS])
    runner.run(prompts)
    manifests = []
    for t in (1, 2):
        key, new_key = f"M{t}", f"M{t + 1}"
        manifests.append(runner.run(EvaluateStage("cream", t, key)).manifest())
        manifests.append(runner.run(SampleStage(f"cream/iter{t}", key, prompts,
                                                t)).manifest())
        runner.run(TrainStage("cream", t, key, new_key, no_pairs(runner, t), "cream", "none"))
    ctx.release()

    assert ctx.events == [
        ("start", "M1"), ("evaluate", "M1"), ("sample", "M1"),
        ("close", "M1"), ("load", "M1"),  # closed before training loads the model
        ("start", "M2"), ("evaluate", "M2"), ("sample", "M2"),
        ("close", "M2"), ("load", "M2"),
    ]
    # The start is in the timings of the stage that paid it, 0 where the engine was reused.
    assert [m["engine_start_seconds"] for m in manifests] == [2.5, 0.0, 2.5, 0.0]
    assert all(m["step"] in ("evaluate", "sample") for m in manifests)


def test_another_checkpoint_closes_the_open_engine_first(ctx) -> None:
    first, paid = ctx.vllm_engine("M1")
    assert paid == 2.5 and ctx.vllm_engine("M1") == (first, 0.0)
    second, paid = ctx.vllm_engine("M2")
    assert paid == 2.5 and first.closed and not second.closed
    assert ctx.events == [("start", "M1"), ("close", "M1"), ("start", "M2")]
    assert second.options == {"dtype": "float32"}  # the run's model.dtype
    ctx.release()
    assert second.closed


def test_starting_an_engine_releases_the_model_in_memory(ctx) -> None:
    ctx.load("M1")
    ctx.vllm_engine("M1")
    assert ctx._models == {}
    ctx.load("M1")  # the HF model back: the engine goes
    assert ctx.events[-2:] == [("close", "M1"), ("load", "M1")]


def test_the_builtin_vllm_components_take_the_shared_engine() -> None:
    from cream_plugin.evaluators.vllm_evaluator import VLLMEvaluator
    from cream_plugin.plugins.registry import get_component

    assert get_component("sampler", "vllm").extra["vllm_engine"] is True
    assert VLLMEvaluator.takes_vllm_engine is True
