"""The probability-scored rubric judge: a verdict for every response, read from the logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cream_plugin.errors import ConfigError
from cream_plugin.ranking.pairs import build_pairs
from cream_plugin.rewarders.judge import (
    DEFAULT_SCORE_PREFIX,
    POINTS,
    JudgeRewarder,
    build_judge_prompt,
)
from cream_plugin.rewarders.judge_probability import (
    cut_justification,
    score_distribution,
    score_token_ids,
)
from cream_plugin.rewarders.judge_prompt import encode_chat
from cream_plugin.rewarders.next_token import next_token_log_probs

PROMPTS = [[{"role": "user", "content": "What is 2+3?"}], "Name a gas."]
RESPONSES = [["5", "five", "It is 5.", "4"], ["oxygen", "neon", "air", "oxygen"]]


def hand_expected(model, tokenizer, prompt, response, suffix=DEFAULT_SCORE_PREFIX):
    """Expected points, argmax and valid mass from one plain forward of the full judge prompt."""
    ids = encode_chat(tokenizer, build_judge_prompt(prompt, response, tokenizer),
                      add_generation_prompt=True, suffix=suffix)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    probs = torch.softmax(logits, dim=-1)
    per_point = []
    for point in POINTS:
        tokens = {tuple(tokenizer.encode(t, add_special_tokens=False))
                  for t in (str(point), " " + str(point))}
        per_point.append(sum(float(probs[t[0]]) for t in tokens if len(t) == 1))
    mass = sum(per_point)
    expected = sum(p * w for p, w in zip(POINTS, per_point, strict=True)) / mass
    return expected, float(POINTS[int(np.argmax(per_point))]), mass


def test_expected_score_equals_hand_computation_from_logits(tiny_model, tiny_tokenizer):
    judge = JudgeRewarder(tiny_model, tiny_tokenizer, mode="probability", batch_size=3,
                          progress=False)
    result = judge.score(PROMPTS, RESPONSES)
    for i, prompt in enumerate(PROMPTS):
        for j, response in enumerate(RESPONSES[i]):
            expected, argmax, mass = hand_expected(tiny_model, tiny_tokenizer, prompt, response)
            assert result.rewards[i, j] == pytest.approx(expected, abs=1e-5)
            assert result.details["argmax"][i][j] == argmax
            assert result.details["valid_mass"][i][j] == pytest.approx(mass, rel=1e-4)


def test_a_verdict_for_every_response_and_mass_recorded(tiny_model, tiny_tokenizer):
    result = JudgeRewarder(tiny_model, tiny_tokenizer, progress=False).score(PROMPTS, RESPONSES)
    assert np.isfinite(result.rewards).all()  # the default mode always answers
    assert result.counts["unparsed_judgements"] == 0
    assert result.counts["unscored_responses"] == 0
    assert result.counts["judgements"] == 7  # the repeated "oxygen" is read once
    mass = np.array(result.details["valid_mass"])
    assert ((mass > 0) & (mass <= 1)).all()
    assert ((result.rewards >= 0) & (result.rewards <= 5)).all()


def test_ties_of_the_five_point_scale_are_broken(tiny_model, tiny_tokenizer):
    """The random tiny model puts the same argmax on every response, so a 5-point verdict would
    tie every prompt; the expected score still orders them and every prompt forms a pair."""
    result = JudgeRewarder(tiny_model, tiny_tokenizer, progress=False).score(PROMPTS, RESPONSES)
    argmax = np.array(result.details["argmax"])
    assert (argmax == argmax[0, 0]).all()
    assert result.counts["argmax_tied_prompts"] == len(PROMPTS)
    assert len(np.unique(result.rewards[0])) == 4
    pairs = build_pairs(["a", "b"], PROMPTS, RESPONSES, result.rewards, None)
    assert len(pairs) == len(PROMPTS)


class FixedJustification(JudgeRewarder):
    """A judge whose justification is fixed text that writes its own verdict and goes on."""

    def generate(self, encoded):
        return [["Relevant and short. Score: 4\nMore words."] for _ in encoded]


def test_justification_then_probability_reads_after_the_judges_own_text(tiny_model,
                                                                        tiny_tokenizer):
    judge = FixedJustification(tiny_model, tiny_tokenizer, mode="justify-probability",
                               progress=False)
    result = judge.score(PROMPTS[:1], RESPONSES[:1])
    suffix = "Relevant and short.\n" + DEFAULT_SCORE_PREFIX  # cut at its own verdict
    for j, response in enumerate(RESPONSES[0]):
        expected, _, _ = hand_expected(tiny_model, tiny_tokenizer, PROMPTS[0], response, suffix)
        assert result.rewards[0, j] == pytest.approx(expected, abs=1e-5)
    assert result.details["judgements"][0][0] == ["Relevant and short. Score: 4\nMore words."]


def test_real_justification_mode_gives_a_verdict_for_every_response(tiny_model,
                                                                    tiny_tokenizer):
    judge = JudgeRewarder(tiny_model, tiny_tokenizer, mode="justify-probability",
                          max_new_tokens=6, progress=False)
    result = judge.score(PROMPTS, RESPONSES)
    assert np.isfinite(result.rewards).all()
    assert result.counts["unparsed_judgements"] == 0


def test_generate_mode_still_parses(tiny_model, tiny_tokenizer):
    judge = JudgeRewarder(tiny_model, tiny_tokenizer, mode="generate", max_new_tokens=4,
                          progress=False)
    result = judge.score(PROMPTS, RESPONSES)
    assert result.counts["judgements"] == 7
    assert "valid_mass" not in result.details


def test_tree_and_padded_layouts_agree(tiny_model, tiny_tokenizer):
    seqs = [encode_chat(tiny_tokenizer, build_judge_prompt(PROMPTS[0], r, tiny_tokenizer),
                        suffix=DEFAULT_SCORE_PREFIX) for r in RESPONSES[0]]
    ids = [t for ids in score_token_ids(tiny_tokenizer, POINTS) for t in ids]
    pad = tiny_tokenizer.pad_token_id
    tree = next_token_log_probs(tiny_model, seqs, ids, pad, batch_size=3, group_of=[0] * 4)
    padded = next_token_log_probs(tiny_model, seqs, ids, pad, batch_size=3)
    torch.testing.assert_close(tree, padded, atol=1e-5, rtol=1e-5)


def test_score_distribution_by_hand():
    # two responses, tokens: "0", "1", " 1", "2"; point 1 has two spellings
    log_probs = np.log(np.array([[0.1, 0.2, 0.1, 0.0001], [0.0, 0.0, 0.0, 1e-30]]) + 1e-300)
    dist = score_distribution(log_probs, [[10], [11, 12], [13]], [10, 11, 12, 13], [0, 1, 2])
    mass0 = 0.1 + 0.3 + 0.0001
    assert dist.expected[0] == pytest.approx((0.3 + 2 * 0.0001) / mass0)
    assert dist.argmax[0] == 1.0  # both spellings of 1 together beat 0
    assert dist.mass[0] == pytest.approx(mass0)
    assert dist.expected[1] == pytest.approx(2.0)  # a tiny mass still gives a finite score
    assert dist.mass[1] == pytest.approx(1e-30)


def test_score_tokens_take_both_spellings(tiny_tokenizer):
    spellings = score_token_ids(tiny_tokenizer, POINTS)
    assert all(spellings) and len(spellings) == 6
    for point, ids in zip(POINTS, spellings, strict=True):
        assert tiny_tokenizer.encode(str(point), add_special_tokens=False)[0] in ids


def test_cut_justification():
    assert cut_justification("Good. **Score:** 3") == "Good."
    assert cut_justification("Fine answer\n") == "Fine answer"
    assert cut_justification("score = 2 then") == ""


def test_mode_settings_are_checked(tiny_model, tiny_tokenizer):
    with pytest.raises(ConfigError, match="judge mode"):
        JudgeRewarder(tiny_model, tiny_tokenizer, mode="vote")
    with pytest.raises(ConfigError, match="samples > 1"):
        JudgeRewarder(tiny_model, tiny_tokenizer, samples=2, temperature=1.0)
