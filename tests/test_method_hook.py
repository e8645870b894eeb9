"""The method hook's extension point: a method that builds its own iteration from the public
API (cream_plugin.plugins.api), its options, and the graph's guards; the built-in methods'
stages keep their names and identities."""

from __future__ import annotations

from pathlib import Path

import pytest

from cream_plugin.config import load_config
from cream_plugin.errors import ConfigError
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.distributed import DistContext
from cream_plugin.loop.graph import StageGraph
from cream_plugin.loop.runner import Runner
from cream_plugin.loop.stage import given_rows
from cream_plugin.loop.stages.sample import SampleStage
from cream_plugin.plugins import api


def own_pairs_iteration(graph: api.StageGraph, method: api.Method, t: int) -> str:
    """A toy method in the style a third party writes, for graphs that are built, never run:
    two responses per pool prompt with its own decoding, trained on."""
    samples = graph.sample(method.name, t, graph.checkpoint(method.name, t), num_responses=2)
    return graph.train(method.name, t, samples)


def graph_of(tmp_path: Path, **methods: api.Method) -> StageGraph:
    config = load_config(overrides=["iterations=2", f"methods=[{','.join(methods)}]"])
    return StageGraph(config, methods, tmp_path)


def test_a_built_method_runs_its_own_stages_and_the_common_instruments(tmp_path) -> None:
    method = api.Method("own", None, build_iteration=own_pairs_iteration)
    graph = graph_of(tmp_path, own=method).whole_run()
    names = [s.name for s in graph]
    assert "own/iter1/samples" in names and "shared/iter1/samples" not in names
    assert {"own/M2", "own/M3", "evals/own-M2", "evals/own-M3", "own/iter1/movement",
            "own/iter2/exact-kl"} <= set(names)
    # Its own sampling stage of the run's pool prompts: the same-prompt pool applies.
    assert graph.samples[("own", 2)].prompts is graph.prompts()
    assert "own/iter1/same-prompt-pool" in names
    assert graph.finals() == {"M1", "own/M3"}


def test_a_builder_that_returns_another_key_is_refused(tmp_path) -> None:
    def wrong(graph: api.StageGraph, method: api.Method, t: int) -> str:
        own_pairs_iteration(graph, method, t)
        return "M7"

    graph = graph_of(tmp_path, bad=api.Method("bad", None, build_iteration=wrong))
    with pytest.raises(ConfigError, match=r"method 'bad': .*returned 'M7'.*expected 'bad/M2'"):
        graph.iteration("bad", 1)

    def untrained(graph: api.StageGraph, method: api.Method, t: int) -> str:
        return graph.checkpoint(method.name, t + 1)

    graph = graph_of(tmp_path, lazy=api.Method("lazy", None, build_iteration=untrained))
    with pytest.raises(ConfigError, match="the key of a train stage it added"):
        graph.iteration("lazy", 1)


def test_one_stage_name_with_other_upstream_stages_is_an_error(tmp_path) -> None:
    graph = graph_of(tmp_path, own=api.Method("own", None, build_iteration=own_pairs_iteration))
    first = graph.add(given_rows("a", []))
    other = graph.add(given_rows("b", []))
    samples = graph.sample("own", 2, "own/M2", first)
    assert graph.sample("own", 2, "own/M2", first) is samples  # the same node again
    with pytest.raises(ValueError, match="own/iter2/samples: added twice with other upstream"):
        graph.sample("own", 2, "own/M2", other)


def test_the_run_decoding_keeps_the_sample_stage_identity(tmp_path) -> None:
    """A sampling stage without overrides has the inputs it always had (a resumed run reuses
    it); overrides are part of the identity."""
    ctx = RunContext(load_config(), tmp_path, DistContext())
    ctx.model_digest = lambda key: f"fixed:{key}"  # type: ignore[method-assign]
    runner = Runner(ctx)
    prompts = given_rows("prompts", [{"prompt_id": "p", "prompt": "x", "iteration": 1}])
    runner.run(prompts)
    plain = SampleStage("shared/iter1", "M1", prompts, 1).inputs(ctx)
    assert set(plain) == {"model", "prompts"}
    greedy = SampleStage("own/iter1", "M1", prompts, 1, num_responses=1, temperature=0.0)
    assert greedy.inputs(ctx) == {**plain, "decoding": '{"num_responses": 1, "temperature": 0.0}'}


def test_method_settings_take_defaults_and_check_types() -> None:
    method = api.Method("own", None, build_iteration=own_pairs_iteration,
                        options={"size": 3, "scale": 0.5, "mode": "a", "cap": None})
    config = load_config()
    assert api.method_settings(config, method) == {"size": 3, "scale": 0.5, "mode": "a",
                                                   "cap": None}
    config = load_config(overrides=["method_options.own.scale=2", "method_options.own.cap=[1]"])
    assert api.method_settings(config, method)["scale"] == 2.0
    assert api.method_settings(config, method)["cap"] == [1]
    config = load_config(overrides=["method_options.own.size=big"])
    with pytest.raises(ConfigError, match=r"method_options.own.size: expected an integer"):
        api.method_settings(config, method)
