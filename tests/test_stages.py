"""Each pipeline stage in-process on the tiny model through the runner, with a fake context
(models built in memory, fixed model digests): the stage graph of one CREAM iteration."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cream_plugin.config import RunConfig, load_config
from cream_plugin.distributed import DistContext
from cream_plugin.stages.consistency import ConsistencyStage
from cream_plugin.stages.context import RunContext
from cream_plugin.stages.logps import LogpsStage, logps_table
from cream_plugin.stages.pairs import PairsStage
from cream_plugin.stages.rewards import RewardsStage, implicit_pair, rewards_table
from cream_plugin.stages.runner import Runner
from cream_plugin.stages.sample import SampleStage
from cream_plugin.stages.train import TrainStage


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


class FakePrompts:
    digest = "prompts-digest"


@pytest.fixture
def ctx(tmp_path, tiny_tokenizer) -> TinyContext:
    config = load_config(
        overrides=[
            "sampling.num_responses=3",
            "sampling.max_new_tokens=6",
            "training.batch_size=2",
            "training.max_length=128",
        ]
    )
    return TinyContext(tmp_path, config, tiny_tokenizer)


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
    samples = runner.run(SampleStage("shared/iter1", "M1", FakePrompts(), ROWS, 1))
    rows = samples.read_rows()
    assert [len(r["responses"]) for r in rows] == [3] * 4
    assert samples.manifest()["empty_responses"] >= 0

    current = logps_table(runner.run(LogpsStage("shared/iter1", "M1", samples, 1)).read_rows())
    before = logps_table(runner.run(LogpsStage("shared/iter1", "M0", samples, 1)).read_rows())
    rewards, previous = implicit_pair(current, before, None)
    # The registered implicit rewarder's formula: log pi_1 - log pi_0 and M0's mean log-lik.
    empty = current.num_tokens == 0
    np.testing.assert_allclose(rewards[~empty], (current.sum - before.sum)[~empty])
    np.testing.assert_allclose(previous[~empty], (before.sum / before.num_tokens)[~empty])
    assert np.isnan(rewards[empty]).all()

    inputs = {"logps": "x"}
    ids = [r["prompt_id"] for r in rows]
    c_stage = runner.run(ConsistencyStage("cream", 1, rewards, previous, ids, inputs))
    c_rows = {r["prompt_id"]: r["C"] for r in c_stage.read_rows()}
    assert set(c_rows) == set(ids)
    assert "C" in c_stage.manifest()["summary"]

    pairs = runner.run(PairsStage("cream", 1, samples, rewards, inputs, c_stage, True,
                                  current.sum)).read_rows()
    for pair in pairs:
        c = c_rows[pair["prompt_id"]]
        assert pair["consistency"] == c or math.isnan(c)
        assert pair["chosen_reward"] > pair["rejected_reward"]
        assert "ref_chosen_logps" in pair

    # Answer-key rewards need no model; its stage name has no model part.
    oracle = runner.run(RewardsStage("shared/iter1", "answer-key", None, samples, 1))
    assert oracle.name == "shared/iter1/rewards-answer-key"
    assert rewards_table(oracle).shape == (4, 3)
    assert np.isnan(rewards_table(oracle)[3]).all()  # no gold answer for the poem

    loads = list(ctx.loads)
    again = Runner(ctx)
    again.run(SampleStage("shared/iter1", "M1", FakePrompts(), ROWS, 1))
    again.run(LogpsStage("shared/iter1", "M1", samples, 1))
    assert ctx.loads == loads, "a complete stage loaded a model"
    assert again.reused == ["shared/iter1/samples", "shared/iter1/logps-M1"]


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

    class Pairs:
        digest = "pairs"

        @staticmethod
        def read_rows() -> list[dict[str, Any]]:
            return pair_rows

    stage = runner.run(TrainStage("cream", 1, "M1", "cream/M2", Pairs(), "cream", "dynamic"))
    assert (stage.folder_path / "model.safetensors").is_file()
    assert (ctx.run_dir / "cream/M2.train_log.json").is_file()
    assert stage.manifest()["pairs"] == 2 and stage.manifest()["mode"] == "dynamic"


def _samples(runner: Runner) -> Any:
    return runner.run(SampleStage("shared/iter1", "M1", FakePrompts(), ROWS, 1))


def test_judge_rewards_record_valid_mass_ties_and_pairs(ctx, caplog) -> None:
    """The default (probability) judge scores every response; the manifests carry the valid
    mass, ties and pairs, and the report's rewards section shows them."""
    from cream_plugin.report_rewards import rewards_section

    runner = Runner(ctx)
    samples = _samples(runner)
    stage = runner.run(RewardsStage("shared/iter1", "judge", "M1", samples, 1))
    manifest = stage.manifest()
    counts = manifest["counts"]
    assert counts["unparsed_judgements"] == 0 and counts["scored"] == 12
    assert 0 < manifest["mean_valid_mass"] <= 1
    assert "prompts_all_tied" in counts and "prompts_with_ties" in counts
    rows = stage.read_rows()
    assert all(len(r["argmax"]) == 3 and len(r["valid_mass"]) == 3 for r in rows)
    rewards = rewards_table(stage)
    pairs = runner.run(PairsStage("srlm", 1, samples, rewards, {"rewards": stage.digest},
                                  None, False, None))
    assert pairs.manifest()["pairs"] == len(pairs.read_rows()) > 0
    section = rewards_section(ctx.run_dir)
    assert section is not None and "No pairs" not in section
    assert f"| srlm | 1 | judge-M1 | 12 | 0 / {counts['judgements']} |" in section
    assert f"{len(pairs.read_rows())} / 4 |" in section


def test_no_pairs_is_called_out_or_an_error(ctx, caplog) -> None:
    from cream_plugin.errors import DataError
    from cream_plugin.report_rewards import rewards_section

    runner = Runner(ctx)
    samples = _samples(runner)
    tied = np.ones((4, 3))
    with caplog.at_level("WARNING", logger="cream.pairs"):
        stage = runner.run(PairsStage("srlm", 1, samples, tied, {"rewards": "r"}, None, False,
                                      None))
    assert stage.manifest()["no_pairs"] is True and stage.manifest()["pairs"] == 0
    assert "NO PREFERENCE PAIRS" in caplog.text and "4 prompts" in caplog.text
    section = rewards_section(ctx.run_dir)
    assert section is not None
    assert "**No pairs: srlm iteration 1** formed no preference pair from 4 prompts" in section

    ctx.config.training.require_pairs = True
    with pytest.raises(DataError, match="require_pairs is true"):
        Runner(ctx).run(PairsStage("srlm", 2, samples, tied, {"rewards": "other"}, None, False,
                                   None))


def test_model_independent_reward_says_c_is_one(ctx, caplog) -> None:
    from cream_plugin.report_rewards import rewards_section

    runner = Runner(ctx)
    samples = _samples(runner)
    oracle = runner.run(RewardsStage("shared/iter1", "answer-key", None, samples, 1))
    rewards = rewards_table(oracle)
    inputs = {"rewards": oracle.digest, "prev": oracle.digest}
    ids = [r["prompt_id"] for r in samples.read_rows()]
    c_stage = runner.run(ConsistencyStage("cream", 1, rewards, rewards, ids, inputs))
    with caplog.at_level("WARNING", logger="cream.pairs"):
        stage = runner.run(PairsStage("cream", 1, samples, rewards, inputs, c_stage, True, None,
                                      model_independent=True))
    assert all(p["consistency"] == 1.0 for p in stage.read_rows())  # every pair: plain DPO
    assert stage.manifest()["constant_consistency"] is True
    assert "cream = cream-no-rc" in caplog.text
    section = rewards_section(ctx.run_dir)
    assert section is not None and "**cream: C = 1 for every pair.**" in section
