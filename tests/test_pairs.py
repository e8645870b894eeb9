"""Pair building: best vs worst, skips, the consistency join by prompt id, TRL's format."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cream_plugin.errors import DataError
from cream_plugin.forward.logprobs import SequenceLogProbs
from cream_plugin.ranking.consistency import consistency_rate
from cream_plugin.ranking.pairs import build_pairs

CHAT = [{"role": "user", "content": "hi"}]


def _table():
    ids = ["a", "b", "c", "d", "e"]
    prompts = [CHAT, "plain prompt", CHAT, CHAT, CHAT]
    responses = [["x0", "x1", "x2"], ["y0", "y1", "y2"], ["z0", "z1", "z2"],
                 ["w0", "w1", "w2"], ["v0", "v1", "v2"]]
    rewards = np.array([
        [0.1, 0.9, -0.5],        # best 1, worst 2
        [2.0, 1.0, 3.0],         # best 2, worst 1
        [1.0, 1.0, 1.0],         # all equal: skipped
        [np.nan, 0.3, np.nan],   # one finite reward: skipped
        [np.nan, 0.3, 0.7],      # NaN ignored: best 2, worst 1
    ])
    return ids, prompts, responses, rewards


def test_best_vs_worst_in_trl_format_and_skips():
    ids, prompts, responses, rewards = _table()
    stats: Counter[str] = Counter()
    pairs = build_pairs(ids, prompts, responses, rewards, stats=stats)
    assert [p["prompt_id"] for p in pairs] == ["a", "b", "e"]
    first = pairs[0]
    assert first["prompt"] == CHAT
    assert first["chosen"] == [{"role": "assistant", "content": "x1"}]
    assert first["rejected"] == [{"role": "assistant", "content": "x2"}]
    assert (first["chosen_reward"], first["rejected_reward"]) == (0.9, -0.5)
    assert first["consistency"] == 1.0
    assert pairs[1]["chosen"] == "y2" and pairs[1]["rejected"] == "y1"  # plain-text prompt
    assert pairs[2]["chosen"][0]["content"] == "v2" and pairs[2]["rejected"][0]["content"] == "v1"
    assert stats == Counter(prompts=5, pairs=3, skipped_all_equal=1, skipped_too_few_rewards=1)


def test_ties_at_the_top_go_to_the_first_response():
    pairs = build_pairs(["p"], [CHAT], [["r0", "r1", "r2"]], [[1.0, 3.0, 3.0]])
    assert pairs[0]["chosen"][0]["content"] == "r1"
    assert pairs[0]["rejected"][0]["content"] == "r0"


def test_consistency_joined_by_prompt_id_not_position():
    ids, prompts, responses, rewards = _table()
    # The mapping is in another order and includes skipped prompts: the join must use the ids.
    mapping = {"e": 0.25, "d": 0.0, "c": 0.1, "b": 0.75, "a": 0.5}
    pairs = build_pairs(ids, prompts, responses, rewards, mapping)
    assert {p["prompt_id"]: p["consistency"] for p in pairs} == {"a": 0.5, "b": 0.75, "e": 0.25}
    with pytest.raises(DataError, match=r"no consistency value for prompt id\(s\) \['e'\]"):
        build_pairs(ids, prompts, responses, rewards, {k: 1.0 for k in "abcd"})


def test_consistency_result_and_ref_logps():
    ids, prompts, responses, rewards = _table()
    previous = -rewards
    result = consistency_rate(rewards, previous)
    ref = SequenceLogProbs(np.arange(15, dtype=float).reshape(5, 3), np.ones((5, 3), dtype=int))
    pairs = build_pairs(ids, prompts, responses, rewards, result, ref_logps=ref)
    by_id = {p["prompt_id"]: p for p in pairs}
    assert by_id["a"]["consistency"] == pytest.approx(result.per_prompt[0])
    assert by_id["a"]["consistency"] == 0.0  # reversed ranking
    assert by_id["a"]["ref_chosen_logps"] == 1.0 and by_id["a"]["ref_rejected_logps"] == 2.0
    assert by_id["e"]["ref_chosen_logps"] == 14.0 and by_id["e"]["ref_rejected_logps"] == 13.0


def test_bad_input_is_named():
    ids, prompts, responses, rewards = _table()
    with pytest.raises(DataError, match="'a' occurs more than once"):
        build_pairs(["a", "a", "c", "d", "e"], prompts, responses, rewards)
    with pytest.raises(DataError, match="expected \\(5, N\\)"):
        build_pairs(ids, prompts, responses, rewards[:3])
    with pytest.raises(DataError, match="expected \\(5,\\) or a mapping"):
        build_pairs(ids, prompts, responses, rewards, [0.5, 0.5])
