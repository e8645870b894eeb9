"""Rewarders by name (a test plugin's, from config and CLI); `cream reward` and `cream pairs`."""

from __future__ import annotations

import json
import types
from collections import Counter

import numpy as np
import pytest

from cream_plugin import hookimpl
from cream_plugin.cli import main
from cream_plugin.config import load_config
from cream_plugin.plugins.interfaces import RewardResult
from cream_plugin.rewarders import build_rewarder

PROMPTS = [
    [{"role": "user", "content": "What is two plus three?"}],
    "Question: Which gas do plants absorb? Answer:",
    [{"role": "user", "content": "Write a short poem about the sea."}],
]
RESPONSES = [["Answer: 5", "4", "The quick brown fox."], [" B", " carbon dioxide", " oxygen"],
             ["The waves roll in.", "sea", "no"]]


class LengthRewarder:
    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def score(self, prompts, responses):
        rewards = [[self.scale * len(r) for r in row] for row in responses]
        return RewardResult(np.array(rewards, dtype=float), Counter(scored=9))


def _plugin() -> types.ModuleType:
    module = types.ModuleType("cream_test_rewarder_plugin")

    @hookimpl
    def register_rewarders(register):
        register("test-length", LengthRewarder, description="reward = scale * len(response)")

    module.register_rewarders = register_rewarders  # type: ignore[attr-defined]
    return module


@pytest.fixture
def test_plugin(fresh_plugins):
    from cream_plugin.testing import add_test_plugin

    add_test_plugin(_plugin(), "test-plugin")


def _write_samples(path, references=None):
    with path.open("w") as handle:
        for k, (prompt, responses) in enumerate(zip(PROMPTS, RESPONSES, strict=True)):
            row = {"prompt_id": f"p{k}", "prompt": prompt, "responses": responses}
            if references:
                row["reference"] = references[k]
            handle.write(json.dumps(row) + "\n")
    return path


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_plugin_rewarder_from_config(test_plugin):
    cfg = load_config(overrides=["rewarder.name=test-length",
                                 "rewarder.options={test-length: {scale: 2}}"])
    rewarder = build_rewarder(cfg.rewarder.name, options=cfg.rewarder.options[cfg.rewarder.name])
    result = rewarder.score(PROMPTS, RESPONSES)
    assert result.rewards[0, 0] == 2 * len("Answer: 5")


def test_plugin_rewarder_from_cli(test_plugin, tmp_path, capsys):
    samples = _write_samples(tmp_path / "samples.jsonl")
    out = tmp_path / "rewards.jsonl"
    config = tmp_path / "run.yaml"
    config.write_text("rewarder:\n  name: test-length\n  options: {test-length: {scale: 3}}\n")
    assert main(["reward", str(samples), "-o", str(out), "--config", str(config)]) == 0
    assert _read(out)[1]["rewards"] == [3.0 * len(r) for r in RESPONSES[1]]
    assert main(["reward", str(samples), "-o", str(out), "--rewarder", "test-length",
                 "--option", "scale=0.5"]) == 0
    rows = _read(out)
    assert [r["prompt_id"] for r in rows] == ["p0", "p1", "p2"]
    assert rows[1]["rewards"] == [0.5 * len(r) for r in RESPONSES[1]]
    assert rows[0]["prompt"] == PROMPTS[0] and "logps" not in rows[0]
    assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["rewarder"] == "test-length"


def test_unknown_rewarder_is_a_clear_cli_error(fresh_plugins, tmp_path, capsys):
    samples = _write_samples(tmp_path / "samples.jsonl")
    assert main(["reward", str(samples), "-o", str(tmp_path / "o.jsonl"),
                 "--rewarder", "nope"]) == 1
    err = capsys.readouterr().err
    assert "unknown rewarder 'nope'" in err and "implicit" in err


def test_bad_samples_row_names_file_and_row(fresh_plugins, tmp_path, capsys):
    samples = tmp_path / "bad.jsonl"
    samples.write_text(json.dumps({"prompt_id": "a", "prompt": "q", "responses": ["x", "y"]})
                       + "\n" + json.dumps({"prompt_id": "b", "prompt": "q", "responses": ["x"]})
                       + "\n")
    assert main(["reward", str(samples), "-o", str(tmp_path / "o.jsonl"),
                 "--rewarder", "answer-key"]) == 1
    assert "bad.jsonl: row 2: 1 responses" in capsys.readouterr().err


def test_answer_key_cli_uses_references_without_a_model(fresh_plugins, tmp_path):
    samples = tmp_path / "s.jsonl"
    rows = [("2+3?", ["#### 5", "6", "4"], "number:5"), ("Gas? A. O2 B. CO2", ["B", "A", "?"],
            "choice:B"), ("Unlabelled", ["x", "y", "z"], None)]
    samples.write_text("".join(json.dumps({"prompt_id": str(k), "prompt": p, "responses": r,
                                           "reference": ref}) + "\n"
                               for k, (p, r, ref) in enumerate(rows)))
    out = tmp_path / "r.parquet"
    assert main(["reward", str(samples), "-o", str(out), "--rewarder", "answer-key",
                 "--set", "model.name=/does/not/exist"]) == 0
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert ds[0]["rewards"] == [1.0, 0.0, 0.0]
    assert ds[1]["rewards"] == [1.0, 0.0, 0.0]
    assert ds[2]["rewards"] == [None, None, None]


def test_reward_and_pairs_cli_end_to_end(fresh_plugins, tiny_model_dir, tmp_path, capsys):
    """M1 scored against M0, M0 scored alone; pairs joined with their consistency."""
    from cream_plugin.testing import save_tiny_model

    m0 = save_tiny_model(tmp_path / "m0", seed=5)
    samples = _write_samples(tmp_path / "samples.jsonl")
    cache = tmp_path / "logps.jsonl"
    current, previous = tmp_path / "r1.jsonl", tmp_path / "r0.jsonl"
    base = ["--cache", str(cache), "--no-progress", "--batch-size", "4"]
    assert main(["reward", str(samples), "-o", str(current), "--model", str(tiny_model_dir),
                 "--ref-model", str(m0), "--option", "beta=0.1", *base]) == 0
    first = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert first["cache_misses"] == 18 and first["cache_hits"] == 0
    assert main(["reward", str(samples), "-o", str(previous), "--model", str(m0), *base]) == 0
    second = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert second["cache_hits"] == 9 and second["cache_misses"] == 0  # M0's log-probs reused

    rows1, rows0 = _read(current), _read(previous)
    for r1, r0 in zip(rows1, rows0, strict=True):
        np.testing.assert_allclose(r1["rewards"],
                                   0.1 * (np.array(r1["logps"]) - np.array(r1["ref_logps"])))
        np.testing.assert_allclose(r0["rewards"], np.array(r0["logps"]) / r0["num_tokens"])
        np.testing.assert_allclose(r1["ref_logps"], r0["logps"])

    # The previous file in another order: the join is by prompt id.
    shuffled = tmp_path / "r0_shuffled.jsonl"
    shuffled.write_text("".join(json.dumps(r) + "\n" for r in rows0[::-1]))
    pairs_path = tmp_path / "pairs.jsonl"
    assert main(["pairs", str(current), "--previous", str(shuffled), "-o", str(pairs_path),
                 "--metric", "kendall"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["consistency"]["metric"] == "kendall"

    from cream_plugin.ranking.consistency import consistency_rate

    expected = consistency_rate(np.array([r["rewards"] for r in rows1]),
                                np.array([r["rewards"] for r in rows0])).as_mapping(
                                    [r["prompt_id"] for r in rows1])
    import datasets

    pairs = datasets.load_dataset("json", data_files=str(pairs_path), split="train")
    assert len(pairs) == summary["pairs"] == 3
    for pair in pairs:
        k = int(pair["prompt_id"][1:])
        rewards = np.array(rows1[k]["rewards"])
        assert pair["consistency"] == pytest.approx(expected[pair["prompt_id"]])
        assert pair["chosen_reward"] == pytest.approx(rewards.max())
        best = int(rewards.argmax())
        assert pair["ref_chosen_logps"] == pytest.approx(rows1[k]["logps"][best])
        chosen = pair["chosen"]
        chosen = chosen[0]["content"] if isinstance(chosen, list) else chosen
        assert chosen == RESPONSES[k][best]

    # average mode: every pair carries the data-set mean
    assert main(["pairs", str(current), "--previous", str(previous), "-o",
                 str(tmp_path / "avg.jsonl"), "--mode", "average"]) == 0
    avg = _read(tmp_path / "avg.jsonl")
    assert len({p["consistency"] for p in avg}) == 1
