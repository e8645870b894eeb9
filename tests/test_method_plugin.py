"""A third-party method through the ``register_methods`` hook: a random-pairs baseline (a
plugin rewarder that draws seeded random rewards) run end to end by ``cream run --method``."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from cream_plugin import hookimpl
from cream_plugin.plugins.interfaces import RewardResult
from cream_plugin.plugins.methods import Method


class RandomRewarder:
    """Seeded uniform rewards: pairs chosen at random (a chance-level baseline)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def score(self, prompts, responses):
        return RewardResult(self.rng.random((len(responses), len(responses[0]))))


def _plugin() -> types.ModuleType:
    module = types.ModuleType("cream_random_pairs_plugin")

    @hookimpl
    def register_rewarders(register):
        register("random", RandomRewarder)

    @hookimpl
    def register_methods(register):
        register(Method("random-pairs", "random", description="random pairs, plain DPO"))

    module.register_rewarders = register_rewarders  # type: ignore[attr-defined]
    module.register_methods = register_methods  # type: ignore[attr-defined]
    return module


@pytest.fixture
def random_pairs_plugin(fresh_plugins):
    from cream_plugin.plugins.registry import clear_cache
    from cream_plugin.testing import add_test_plugin

    add_test_plugin(_plugin(), "random-pairs")
    yield
    clear_cache()


def test_plugin_method_is_listed(random_pairs_plugin) -> None:
    from cream_plugin.plugins.registry import components

    found = components("method")
    assert found["random-pairs"].obj.reward == "random"
    assert found["random-pairs"].plugin == "random-pairs"
    assert {"sft", "srlm", "oracle", "cream-no-rc", "cream", "scir"} <= set(found)


def test_unknown_method_lists_the_registered_ones(random_pairs_plugin) -> None:
    from cream_plugin.errors import ConfigError
    from cream_plugin.plugins.methods import get_method

    with pytest.raises(ConfigError, match=r"unknown method .nope.; known: .*random-pairs"):
        get_method("nope")


@pytest.mark.slow
def test_cream_run_runs_a_plugin_method_end_to_end(random_pairs_plugin, tmp_path, data_dir,
                                                   monkeypatch) -> None:
    from cream_plugin.cli import main

    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    out = tmp_path / "run"
    code = main(["run", "--preset", "smoke", "--method", "random-pairs", "--output", str(out),
                 "--set", "iterations=1", "--set", "evaluation.limit=1",
                 "--set", "evaluation.tasks=[cream_arc_easy]"])
    assert code == 0
    text = (out / "random-pairs/iter1/pairs.jsonl").read_text()
    pairs = [json.loads(x) for x in text.splitlines()]
    assert pairs and all(p["consistency"] == 1.0 for p in pairs)
    rewards = out / "shared/iter1/rewards-random.jsonl"
    assert rewards.is_file()
    assert (out / "random-pairs/M2/model.safetensors").is_file()
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["method"], r["iteration"]) for r in results} >= {("random-pairs", 2)}


@pytest.mark.slow
def test_measured_but_unused_consistency(tmp_path, data_dir, monkeypatch) -> None:
    """cream-c1-first: iteration 1's pairs carry C = 1 (plain DPO) although C is measured;
    iteration 2's pairs carry the consistency stage's C. srlm with consistency.measure_all:
    its judge's C against M_{t-1} is measured in both iterations and never weighs a pair."""
    from cream_plugin.cli import main

    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    out = tmp_path / "run"
    code = main(["run", "--preset", "smoke", "--output", str(out),
                 "--set", "methods=[srlm,cream-c1-first]", "--set", "consistency.measure_all=true",
                 "--set", "evaluation.limit=1", "--set", "evaluation.tasks=[cream_arc_easy]"])
    assert code == 0

    def read(path: str) -> list[dict]:
        return [json.loads(x) for x in (out / path).read_text().splitlines()]

    variant = "cream-c1-first"
    first, second = read(f"{variant}/iter1/pairs.jsonl"), read(f"{variant}/iter2/pairs.jsonl")
    measured_first = {r["prompt_id"]: r["C"] for r in read(f"{variant}/iter1/consistency.jsonl")}
    measured = {r["prompt_id"]: r["C"] for r in read(f"{variant}/iter2/consistency.jsonl")}
    assert first and all(p["consistency"] == 1.0 for p in first)
    assert any(measured_first[p["prompt_id"]] != 1.0 for p in first)  # C existed, was not used
    assert second and all(p["consistency"] == pytest.approx(measured[p["prompt_id"]])
                          for p in second)
    assert any(p["consistency"] != 1.0 for p in second)
    for t in (1, 2):
        judged = read(f"srlm/iter{t}/consistency.jsonl")
        assert judged and all(0.0 <= r["C"] <= 1.0 for r in judged if r["C"] == r["C"])
        assert all(p["consistency"] == 1.0 for p in read(f"srlm/iter{t}/pairs.jsonl"))
