"""The Method knobs behind the length-finding controls (consistency_override, reward_options,
training_overrides), ``consistency.after_last`` (C of M_(T+1) against M_T), and the promise
that none of them changes a stage of an existing method while at its default."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stage_identities import graph_identities, smoke_config
from test_stages import CTX_OVERRIDES, ROWS, TinyContext

from cream_plugin.config import load_config
from cream_plugin.errors import ConfigError
from cream_plugin.loop.runner import Runner
from cream_plugin.loop.stage import given_rows
from cream_plugin.loop.stages.logps import LogpsStage
from cream_plugin.loop.stages.pairs import PairsStage, shuffle_seed
from cream_plugin.loop.stages.rewards import ImplicitRewardsStage, rewards_table
from cream_plugin.loop.stages.sample import SampleStage
from cream_plugin.loop.stages.train import TrainStage
from cream_plugin.plugins.builtins.methods import LENGTH_CONTROLS
from cream_plugin.plugins.methods import Method, get_method, options_tag

RECORDED = Path(__file__).parent / "data" / "smoke_stage_identities_9b60404.json"
CONTROLS = LENGTH_CONTROLS
RECORDED_METHODS = ["sft", "srlm", "oracle", "cream-no-rc", "cream", "scir", "cream-c1-first"]
"""The smoke preset's methods when the record was made."""


@pytest.fixture
def ctx(tmp_path, tiny_tokenizer) -> TinyContext:
    return TinyContext(tmp_path, load_config(overrides=CTX_OVERRIDES), tiny_tokenizer)


# -- identities ---------------------------------------------------------------------------------
def _new_stage(name: str) -> bool:
    """A stage of a control method (a reward stage named with a method's rewarder options
    among them), or an after-last stage: the only stages the change adds."""
    owner = name.removeprefix("evals/").rsplit("-M", 1)[0] if name.startswith("evals/") \
        else name.split("/")[0]
    return (owner in CONTROLS or name == "prompts-after-last" or "/iter3/" in name
            or name.rpartition("/")[2].startswith("rewards-implicit+"))


@pytest.mark.parametrize(("after_last", "controls"), [(False, False), (True, False),
                                                      (True, True)])
def test_existing_stages_keep_the_identities_recorded_before_the_knobs(
        after_last, controls, data_dir, tmp_path, monkeypatch) -> None:
    """The smoke preset's graph (every built-in method) against the record made with the code
    at 9b60404, before the Method knobs and after_last existed (tests/stage_identities.py):
    every recorded stage is still there with the same name, type, version, settings, config
    identity, models and inputs (upstream stages by name); only the controls' stages and the
    after-last stages are new. (A record from the old code, not identities computed with the
    knobs left out, so a change that leaks into every stage cannot hide in both sides.)"""
    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    recorded = json.loads(RECORDED.read_text())
    # The methods the record was made with (the smoke preset's at 9b60404; it has more now).
    methods = RECORDED_METHODS + (list(CONTROLS) if controls else [])
    settings = [f"consistency.after_last={str(after_last).lower()}",
                f"methods=[{', '.join(methods)}]"]
    if controls:  # beside the controls (sharing iteration 1) and with a rate override set
        settings += ["training.method_overrides={cream-no-rc-matched-lr: {learning_rate: 1}}"]
    config = smoke_config(settings)
    now = {r["name"]: r for r in graph_identities(config, tmp_path)}
    for old in recorded:
        assert now.get(old["name"]) == old, old["name"]
    added = sorted(set(now) - {r["name"] for r in recorded})
    assert [n for n in added if not _new_stage(n)] == []
    assert any("/iter3/consistency" in n for n in added) == after_last


def test_settings_outside_the_hash() -> None:
    """after_last adds stages and method_overrides is hashed by the train stage it acts on:
    neither changes a section hash, so turning them on in a finished run redoes nothing."""
    base = load_config()
    for setting in ("consistency.after_last=true",
                    "training.method_overrides={cream: {learning_rate: 1.0e-7}}"):
        changed = load_config(overrides=[setting])
        assert changed.section_hash("consistency", "training") == \
            base.section_hash("consistency", "training"), setting
    assert load_config(overrides=["training.beta=0.2"]).section_hash("training") != \
        base.section_hash("training")


# -- the C override ----------------------------------------------------------------------------
def _pairs_inputs(runner: Runner, n: int) -> tuple[Any, Any, Any, dict[str, float]]:
    """Given samples (3 responses each, a strict best and worst), rewards and C for n prompts;
    C differs between prompts, so a permutation is visible."""
    samples = given_rows("shared/iter1/samples", [
        {"prompt_id": f"p{i}", "prompt": [{"role": "user", "content": f"question {i}"}],
         "responses": [f"a{i}", f"b{i}", f"c{i}"]} for i in range(n)])
    rewards = given_rows("shared/iter1/rewards", [
        {"prompt_id": f"p{i}", "rewards": [1.0, 0.0, -1.0]} for i in range(n)])
    measured = {f"p{i}": round(0.05 + 0.9 * i / (n - 1), 6) for i in range(n)}
    consistency = given_rows("x/iter1/consistency", [
        {"prompt_id": pid, "C": c} for pid, c in measured.items()])
    for stage in (samples, rewards, consistency):
        runner.run(stage)
    return samples, rewards, consistency, measured


def _pairs(runner: Runner, override: str | float | None, n: int = 12) -> list[dict[str, Any]]:
    samples, rewards, consistency, _ = _pairs_inputs(runner, n)
    stage = PairsStage("x", 1, samples, rewards, rewards, consistency, True, None,
                       consistency_override=override)
    return runner.run(stage).read_rows()


def test_shuffled_c_permutes_the_measured_c_across_the_pairs(ctx) -> None:
    runner = Runner(ctx)
    _, _, _, measured = _pairs_inputs(runner, 12)
    plain = _pairs(runner, None)
    assert [p["consistency"] for p in plain] == [measured[p["prompt_id"]] for p in plain]
    assert all("measured_consistency" not in p for p in plain)  # rows as they always were

    shuffled = _pairs(runner, "shuffle")
    assert [p["measured_consistency"] for p in shuffled] == [p["consistency"] for p in plain]
    # The same multiset of C, assigned by the permutation seeded by (run seed, iteration).
    assert Counter(p["consistency"] for p in shuffled) == Counter(measured.values())
    order = np.random.default_rng(shuffle_seed(ctx.config.seed, 1)).permutation(len(plain))
    assert [p["consistency"] for p in shuffled] == [plain[k]["consistency"] for k in order]
    assert sum(p["consistency"] != p["measured_consistency"] for p in shuffled) >= 8
    # Everything else in the rows is untouched.
    drop = ("consistency", "measured_consistency")
    assert [{k: v for k, v in p.items() if k not in drop} for p in shuffled] == \
        [{k: v for k, v in p.items() if k not in drop} for p in plain]

    ctx.config = load_config(overrides=[*CTX_OVERRIDES, "seed=43"])
    other = _pairs(Runner(ctx), "shuffle")
    assert [p["consistency"] for p in other] != [p["consistency"] for p in shuffled]


def test_c_half_fixes_c_of_every_pair_and_records_the_measured_one(ctx) -> None:
    runner = Runner(ctx)
    _, _, _, measured = _pairs_inputs(runner, 6)
    half = _pairs(runner, 0.5, n=6)
    assert len(half) == 6
    assert all(p["consistency"] == 0.5 for p in half)
    assert [p["measured_consistency"] for p in half] == [measured[p["prompt_id"]] for p in half]


def test_a_wrong_consistency_override_is_refused_when_the_method_is_made() -> None:
    with pytest.raises(ValueError, match="regularised=True"):
        Method("x", "main", consistency_override=0.5)
    with pytest.raises(ValueError, match="'shuffle' or a number in"):
        Method("x", "main", regularised=True, consistency_override=1.5)
    with pytest.raises(ValueError, match="'shuffle' or a number in"):
        Method("x", "main", regularised=True, consistency_override="permute")


# -- the learning-rate override ----------------------------------------------------------------
class Reached(Exception):
    pass


def test_training_override_reaches_the_trainers_config(ctx, monkeypatch, tiny_tokenizer) -> None:
    """The train stage of cream-no-rc-matched-lr gives its trainer the method's learning rate
    (2e-6), the config's ``training.method_overrides`` wins over it, and other methods keep
    the run's rate."""
    import cream_plugin.plugins.registry as registry

    seen: list[Any] = []
    real = registry.get_trainer

    class Recording:
        def __init__(self, *, args: Any, **_: Any) -> None:
            seen.append(args)
            raise Reached

    monkeypatch.setattr(registry, "get_trainer", lambda name: (Recording, real(name)[1]))
    runner = Runner(ctx)
    pairs = given_rows("m/iter1/pairs", [
        {"prompt": [{"role": "user", "content": "q"}],
         "chosen": [{"role": "assistant", "content": "a"}],
         "rejected": [{"role": "assistant", "content": "b"}],
         "consistency": 1.0, "prompt_id": "p0"}])
    runner.run(pairs)

    def rate(method: str, config: Any) -> float:
        spec = get_method(method)
        ctx.config = config
        stage = TrainStage(method, 1, "M1", f"{method}/M2", pairs, "cream", "none",
                           overrides=spec.training_settings(config))
        with pytest.raises(Reached):
            stage.compute(ctx)
        return float(seen[-1].learning_rate)

    config = load_config(overrides=[*CTX_OVERRIDES, "training.learning_rate=2.0e-5"])
    assert rate("cream-no-rc-matched-lr", config) == pytest.approx(2e-6)
    assert rate("cream-no-rc", config) == pytest.approx(2e-5)
    tuned = load_config(overrides=[
        *CTX_OVERRIDES, "training.learning_rate=2.0e-5",
        "training.method_overrides={cream-no-rc-matched-lr: {learning_rate: 3.0e-6}}"])
    assert rate("cream-no-rc-matched-lr", tuned) == pytest.approx(3e-6)


def test_training_overrides_are_checked_before_work(data_dir, monkeypatch) -> None:
    from cream_plugin.loop.preflight import check_method_overrides
    from cream_plugin.plugins.methods import resolve_methods

    def check(*overrides: str) -> None:
        config = load_config(overrides=["methods=[cream-no-rc-matched-lr]", *overrides])
        check_method_overrides(config, resolve_methods(config.methods))

    check()  # the method's own default passes
    with pytest.raises(ConfigError, match=r"training.method_overrides: .*no-such-method"):
        check("training.method_overrides={no-such-method: {learning_rate: 1.0e-6}}")
    with pytest.raises(ConfigError, match=r"training.method_overrides.cream-no-rc-matched-lr"
                                          r".learning_rate"):
        check("training.method_overrides={cream-no-rc-matched-lr: {learning_rate: -1}}")
    with pytest.raises(ConfigError, match="not a run setting"):
        check("training.method_overrides={cream-no-rc-matched-lr: {no_such_field: 1}}")


# -- the length-normalised implicit reward -----------------------------------------------------
def test_length_normalised_reward_is_the_summed_reward_per_response_token(ctx) -> None:
    """Through the rewards stage as the graph builds it for cream-no-rc-lennorm: its own stage
    name, and every reward equals the summed reward divided by the response's token count."""
    runner = Runner(ctx)
    prompts = given_rows("prompts", ROWS)
    runner.run(prompts)
    sample = SampleStage("shared/iter1", "M1", prompts, 1)
    runner.run(sample)
    on_m1, on_m0 = (LogpsStage("shared/iter1", k, sample, 1) for k in ("M1", "M0"))
    runner.run(on_m1)
    runner.run(on_m0)
    options = get_method("cream-no-rc-lennorm").reward_options
    summed = ImplicitRewardsStage("shared/iter1", "implicit", sample, on_m1, on_m0, 1)
    per_token = ImplicitRewardsStage("shared/iter1", "implicit", sample, on_m1, on_m0, 1,
                                     options)
    assert per_token.name == "shared/iter1/rewards-implicit+length_normalised-M1"
    assert summed.name == "shared/iter1/rewards-implicit-M1"
    tokens = np.array([r["num_tokens"] for r in runner.run(on_m1).read_rows()], dtype=float)
    plain = rewards_table(runner.run(summed))
    normalised = rewards_table(runner.run(per_token))
    assert np.isfinite(plain).sum() >= 6 and (tokens > 1).any()
    np.testing.assert_allclose(normalised, plain / tokens, equal_nan=True)
    # Without a reference (M0's reward) the reward is the mean log-likelihood either way.
    mean_plain = ImplicitRewardsStage("shared/iter1", "implicit", sample, on_m0, None, 1)
    mean_norm = ImplicitRewardsStage("shared/iter1", "implicit", sample, on_m0, None, 1, options)
    np.testing.assert_allclose(rewards_table(runner.run(mean_norm)),
                               rewards_table(runner.run(mean_plain)), equal_nan=True)


def test_implicit_rewards_length_normalised_from_tables() -> None:
    from cream_plugin.forward.logprobs import SequenceLogProbs
    from cream_plugin.rewarders.implicit import implicit_rewards

    policy = SequenceLogProbs(sum=np.array([[-4.0, -9.0]]), num_tokens=np.array([[2, 3]]))
    ref = SequenceLogProbs(sum=np.array([[-6.0, -6.0]]), num_tokens=np.array([[2, 3]]))
    np.testing.assert_allclose(implicit_rewards(policy, ref, 0.5, length_normalised=True),
                               [[0.5, -0.5]])
    np.testing.assert_allclose(implicit_rewards(policy, ref, 0.5), [[1.0, -1.5]])
    assert options_tag({"length_normalised": True, "beta": 0.5}) == \
        "+beta=0.5+length_normalised"


# -- after the last iteration ------------------------------------------------------------------
def test_after_last_adds_m3_vs_m2_consistency_without_training(data_dir, tmp_path,
                                                               monkeypatch) -> None:
    from cream_plugin.loop.graph import StageGraph
    from cream_plugin.loop.stages.consistency import ConsistencyStage
    from cream_plugin.loop.stages.correctness import CorrectnessStage
    from cream_plugin.plugins.methods import resolve_methods

    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    config = smoke_config(["consistency.after_last=true", "consistency.measure_all=true",
                           "methods=[sft, srlm, oracle, cream-no-rc, cream, cream-no-rc-lennorm]"])
    graph = StageGraph(config, resolve_methods(config.methods), tmp_path).whole_run()
    nodes = graph.nodes
    for method in ("cream", "cream-no-rc", "cream-no-rc-lennorm", "srlm"):
        c = nodes[f"{method}/iter3/consistency"]
        assert isinstance(c, ConsistencyStage)
        if method == "srlm":  # its judge as M3 against the judge as M2
            assert [s.models() for s in (c.rewards, c.previous)] == \
                [("srlm/M3",), ("srlm/M2",)]
        else:  # r_3 = log M3 - log M2 and r_2 = log M2 - log M1, on M3's samples
            assert isinstance(c.rewards, ImplicitRewardsStage)
            assert (c.rewards.policy.model_key, c.rewards.reference.model_key) == \
                (f"{method}/M3", f"{method}/M2")
            assert (c.previous.policy.model_key, c.previous.reference.model_key) == \
                (f"{method}/M2", "M1")
            assert c.rewards.samples.name == f"{method}/iter3/samples"
        assert isinstance(nodes[f"{method}/iter3/correctness"], CorrectnessStage)
        assert nodes[f"{method}/iter3/samples"].prompts.name == "prompts-after-last"
        assert f"{method}/iter3/pairs" not in nodes and f"{method}/M4" not in nodes
    assert "oracle/iter3/correctness" in nodes and "oracle/iter3/consistency" not in nodes
    assert not any(n.startswith("sft/iter3") for n in nodes)


def test_after_last_prompts_are_the_next_chunk_of_the_same_pool(data_dir) -> None:
    from cream_plugin.loop.prompt_pool import build_prompt_pool

    sources = ["arc_easy", "openbookqa"]
    two = build_prompt_pool(sources, str(data_dir), 5, 2, 7)
    three = build_prompt_pool(sources, str(data_dir), 5, 3, 7)
    assert three[:2] == two
    used = {p["prompt_id"] for chunk in two for p in chunk}
    assert len(three[2]) == 5 and not used & {p["prompt_id"] for p in three[2]}


@pytest.mark.slow
def test_smoke_run_of_the_controls_with_after_last(data_dir, tmp_path) -> None:
    """``cream run --preset smoke --method <the four controls>`` with after_last on: every
    method's M3-vs-M2 consistency rows (C and the paper's statistics per prompt), M3's pool
    accuracy on iteration 3's prompts, the C overrides in the pairs, the matched rate in the
    training log, the per-token reward's own stages, and the report's consistency table."""
    import subprocess
    import sys

    from cream_plugin.testing import offline_env

    out = tmp_path / "run"
    env = offline_env(data_dir, str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "cream_plugin.cli", "run", "--preset", "smoke", "--method",
           ",".join(CONTROLS), "--set", "consistency.after_last=true", "--output", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]

    def rows(name: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]

    after = {r["prompt_id"] for r in rows("prompts-after-last")}
    assert len(after) == 6 and not after & {r["prompt_id"] for r in rows("prompts")}
    for method in CONTROLS:
        c = rows(f"{method}/iter3/consistency")
        assert {r["prompt_id"] for r in c} == after
        assert all({"C", "kendall", "spearman", "toporder"} <= set(r) for r in c)
        assert len(rows(f"{method}/iter3/correctness")) == 6
    for t in (1, 2):
        half = rows(f"cream-c-half/iter{t}/pairs")
        assert half and all(p["consistency"] == 0.5 for p in half)
        shuffled = rows(f"cream-shuffled-c/iter{t}/pairs")
        assert Counter(p["consistency"] for p in shuffled) == \
            Counter(p["measured_consistency"] for p in shuffled)
    log = json.loads((out / "cream-no-rc-matched-lr/M2.train_log.json").read_text())
    assert max(e["learning_rate"] for e in log if "learning_rate" in e) <= 2e-6
    assert (out / "cream-no-rc-lennorm/iter2/rewards-implicit+length_normalised-cream-no-rc-"
                  "lennorm-M2.jsonl").is_file()
    table = rows("consistency")
    assert {(r["method"], r["iteration"]) for r in table if r["metric"] == "C"} >= \
        {(m, 3) for m in CONTROLS}
