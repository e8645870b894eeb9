"""Each pipeline stage in-process on the tiny model through the runner, with a fake context
(models built in memory, fixed model digests): the stage graph of one CREAM iteration."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cream_plugin.config import RunConfig, load_config
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.distributed import DistContext
from cream_plugin.loop.runner import Runner
from cream_plugin.loop.stage import given_rows
from cream_plugin.loop.stages.consistency import ConsistencyStage
from cream_plugin.loop.stages.logps import LogpsStage, logps_table
from cream_plugin.loop.stages.pairs import PairsStage
from cream_plugin.loop.stages.rewards import ImplicitRewardsStage, RewardsStage, rewards_table
from cream_plugin.loop.stages.sample import SampleStage
from cream_plugin.loop.stages.train import TrainStage


class TinyContext(RunContext):
    """Models are fresh tiny Llamas (seeded per key); digests are the keys."""

    def __init__(self, run_dir: Path, config: RunConfig, tokenizer: Any) -> None:
        super().__init__(config, run_dir, DistContext())
        self.__dict__["tokenizer"] = tokenizer
        self.loads: list[str] = []

    def model_digest(self, key: str) -> str:
        return f"fake:{key}"

    def model_path(self, key: str) -> str:
        return key

    def load(self, key: str, *, sharded: bool = False) -> Any:
        import torch

        from cream_plugin.testing import build_tiny_model

        self.loads.append(key)
        torch.manual_seed(sum(map(ord, key)))
        return build_tiny_model(self.tokenizer).eval()


CTX_OVERRIDES = [
    "sampling.num_responses=3",
    "sampling.max_new_tokens=6",
    "training.batch_size=2",
    "training.max_length=128",
]


@pytest.fixture
def ctx(tmp_path, tiny_tokenizer) -> TinyContext:
    return TinyContext(tmp_path, load_config(overrides=CTX_OVERRIDES), tiny_tokenizer)


ROWS = [
    {"prompt_id": f"p{i}", "prompt": [{"role": "user", "content": q}], "reference": ref,
     "iteration": 1}
    for i, (q, ref) in enumerate(
        [("What is two plus three?", "5"), ("Which gas do plants absorb?", "B"),
         ("Please answer step by step.", "B"), ("Write a short poem about the sea.", None)]
    )
]


def test_one_cream_iteration_through_the_stages(ctx) -> None:
    runner = Runner(ctx)
    prompts = given_rows("prompts", ROWS)
    runner.run(prompts)
    sample = SampleStage("shared/iter1", "M1", prompts, 1)
    samples = runner.run(sample)
    rows = samples.read_rows()
    assert [len(r["responses"]) for r in rows] == [3] * 4
    assert samples.manifest()["empty_responses"] >= 0

    on_m1 = LogpsStage("shared/iter1", "M1", sample, 1)
    on_m0 = LogpsStage("shared/iter1", "M0", sample, 1)
    current = logps_table(runner.run(on_m1).read_rows())
    before = logps_table(runner.run(on_m0).read_rows())
    r_stage = ImplicitRewardsStage("shared/iter1", "implicit", sample, on_m1, on_m0, 1)
    p_stage = ImplicitRewardsStage("shared/iter1", "implicit", sample, on_m0, None, 1)
    loads = list(ctx.loads)
    rewards, previous = rewards_table(runner.run(r_stage)), rewards_table(runner.run(p_stage))
    assert ctx.loads == loads, "the implicit reward scored a model instead of reading log-probs"
    assert runner.result(r_stage).manifest()["cache_misses"] == 0
    # The registered implicit rewarder's formula: log pi_1 - log pi_0 and M0's mean log-lik.
    empty = current.num_tokens == 0
    np.testing.assert_allclose(rewards[~empty], (current.sum - before.sum)[~empty])
    np.testing.assert_allclose(previous[~empty], (before.sum / before.num_tokens)[~empty])
    assert np.isnan(rewards[empty]).all()
    # Its digests came from the upstream results, not from the caller.
    assert runner.result(r_stage).inputs["policy"] == runner.result(on_m1).digest

    ids = [r["prompt_id"] for r in rows]
    consistency = ConsistencyStage("cream", 1, r_stage, p_stage)
    c_stage = runner.run(consistency)
    c_rows = {r["prompt_id"]: r["C"] for r in c_stage.read_rows()}
    assert set(c_rows) == set(ids)
    assert "C" in c_stage.manifest()["summary"]

    pairs = runner.run(PairsStage("cream", 1, sample, r_stage, p_stage, consistency, True,
                                  on_m1)).read_rows()
    for pair in pairs:
        c = c_rows[pair["prompt_id"]]
        assert pair["consistency"] == c or math.isnan(c)
        assert pair["chosen_reward"] > pair["rejected_reward"]
        assert "ref_chosen_logps" in pair

    # Answer-key rewards need no model; its stage name has no model part.
    oracle = runner.run(RewardsStage("shared/iter1", "answer-key", None, sample, 1))
    assert oracle.name == "shared/iter1/rewards-answer-key"
    assert rewards_table(oracle).shape == (4, 3)
    assert np.isnan(rewards_table(oracle)[3]).all()  # no gold answer for the poem

    loads = list(ctx.loads)
    again = Runner(ctx)
    again.run(prompts)
    again.run(SampleStage("shared/iter1", "M1", prompts, 1))
    again.run(LogpsStage("shared/iter1", "M1", sample, 1))
    assert ctx.loads == loads, "a complete stage loaded a model"
    assert again.reused == ["prompts", "shared/iter1/samples", "shared/iter1/logps-M1"]


def test_the_implicit_rewarders_beta_applies_in_the_run(ctx) -> None:
    """The implicit reward stage builds the registered rewarder with its configured options:
    beta=0.5 halves every reward, and the changed setting makes it a different artifact."""
    runner = Runner(ctx)
    prompts = given_rows("prompts", ROWS)
    runner.run(prompts)
    sample = SampleStage("shared/iter1", "M1", prompts, 1)
    runner.run(sample)
    on_m1 = LogpsStage("shared/iter1", "M1", sample, 1)
    on_m0 = LogpsStage("shared/iter1", "M0", sample, 1)
    runner.run(on_m1)
    runner.run(on_m0)
    stage = ImplicitRewardsStage("shared/iter1", "implicit", sample, on_m1, on_m0, 1)
    plain = runner.run(stage)
    default, plain_digest = rewards_table(plain), plain.digest

    ctx.config = load_config(
        overrides=[*CTX_OVERRIDES, "rewarder.options={implicit: {beta: 0.5}}"]
    )
    halved = Runner(ctx)
    for node in (prompts, sample, on_m1, on_m0):
        halved.run(node)
    scaled = halved.run(stage)
    assert halved.ran == [stage.name], "a changed beta must recompute the rewards stage only"
    np.testing.assert_allclose(rewards_table(scaled), 0.5 * default, equal_nan=True)
    assert scaled.digest != plain_digest


@pytest.mark.slow
def test_train_stage_writes_a_checkpoint_and_its_log(ctx) -> None:
    runner = Runner(ctx)
    pair_rows = [
        {"prompt": [{"role": "user", "content": "What is two plus three?"}],
         "chosen": [{"role": "assistant", "content": "Answer: 5"}],
         "rejected": [{"role": "assistant", "content": "The quick brown fox."}],
         "consistency": 0.7, "prompt_id": f"p{i}"}
        for i in range(2)
    ]

    pairs = given_rows("cream/iter1/pairs", pair_rows)
    runner.run(pairs)
    stage = runner.run(TrainStage("cream", 1, "M1", "cream/M2", pairs, "cream", "dynamic"))
    assert (stage.folder_path / "model.safetensors").is_file()
    assert (ctx.run_dir / "cream/M2.train_log.json").is_file()
    assert stage.manifest()["pairs"] == 2 and stage.manifest()["mode"] == "dynamic"


def _samples(runner: Runner) -> SampleStage:
    """The sampling stage of ROWS under M1, run (its upstream prompts given)."""
    prompts = given_rows("prompts", ROWS)
    runner.run(prompts)
    samples = SampleStage("shared/iter1", "M1", prompts, 1)
    runner.run(samples)
    return samples


def test_judge_rewards_record_valid_mass_ties_and_pairs(ctx, caplog) -> None:
    """The default (probability) judge scores every response; the manifests carry the valid
    mass, ties and pairs, and the report's rewards section shows them."""
    from cream_plugin.report.rewards import rewards_section

    runner = Runner(ctx)
    samples = _samples(runner)
    judge = RewardsStage("shared/iter1", "judge", "M1", samples, 1)
    stage = runner.run(judge)
    manifest = stage.manifest()
    counts = manifest["counts"]
    assert counts["unparsed_judgements"] == 0 and counts["scored"] == 12
    assert 0 < manifest["mean_valid_mass"] <= 1
    assert "prompts_all_tied" in counts and "prompts_with_ties" in counts
    rows = stage.read_rows()
    assert all(len(r["argmax"]) == 3 and len(r["valid_mass"]) == 3 for r in rows)
    pairs = runner.run(PairsStage("srlm", 1, samples, judge, None, None, False, None))
    assert pairs.manifest()["pairs"] == len(pairs.read_rows()) > 0
    section = rewards_section(ctx.run_dir)
    assert section is not None and "No pairs" not in section
    assert f"| srlm | 1 | judge-M1 | 12 | 0 / {counts['judgements']} |" in section
    assert f"{len(pairs.read_rows())} / 4 |" in section


def test_no_pairs_is_called_out_or_an_error(ctx, caplog) -> None:
    from cream_plugin.errors import DataError
    from cream_plugin.report.rewards import rewards_section

    runner = Runner(ctx)
    samples = _samples(runner)
    tied = given_rows("srlm/iter1/rewards-tied", [{"rewards": [1.0] * 3}] * 4)
    runner.run(tied)
    with caplog.at_level("WARNING", logger="cream.pairs"):
        stage = runner.run(PairsStage("srlm", 1, samples, tied, None, None, False, None))
    assert stage.manifest()["no_pairs"] is True and stage.manifest()["pairs"] == 0
    assert "NO PREFERENCE PAIRS" in caplog.text and "4 prompts" in caplog.text
    section = rewards_section(ctx.run_dir)
    assert section is not None
    assert "**No pairs: srlm iteration 1** formed no preference pair from 4 prompts" in section

    ctx.config.training.require_pairs = True
    with pytest.raises(DataError, match="require_pairs is true"):
        again = Runner(ctx)
        for upstream in (samples.prompts, samples, tied):
            again.run(upstream)
        again.run(PairsStage("srlm", 2, samples, tied, None, None, False, None))


def test_model_independent_reward_says_c_is_one(ctx, caplog) -> None:
    from cream_plugin.report.rewards import rewards_section

    runner = Runner(ctx)
    samples = _samples(runner)
    oracle = RewardsStage("shared/iter1", "answer-key", None, samples, 1)
    runner.run(oracle)
    consistency = ConsistencyStage("cream", 1, oracle, oracle)
    runner.run(consistency)
    with caplog.at_level("WARNING", logger="cream.pairs"):
        stage = runner.run(PairsStage("cream", 1, samples, oracle, oracle, consistency, True,
                                      None, model_independent=True))
    assert all(p["consistency"] == 1.0 for p in stage.read_rows())  # every pair: plain DPO
    assert stage.manifest()["constant_consistency"] is True
    assert "cream = cream-no-rc" in caplog.text
    section = rewards_section(ctx.run_dir)
    assert section is not None and "**cream: C = 1 for every pair.**" in section
