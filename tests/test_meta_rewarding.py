"""Meta-Rewarding's parts: the length control, the meta-judge's battles and strengths, the
sampled judgements, and the mixed actor + judge pairs (tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cream_plugin.errors import ConfigError
from cream_plugin.ranking.judge_battles import (
    Battles,
    battle_matrix,
    bradley_terry,
    most_uncertain,
    position_weights,
    select_judge_pair,
)
from cream_plugin.ranking.length_control import select_actor_pair
from cream_plugin.ranking.pairs import validate_pair_rows
from cream_plugin.rewarders.judge_prompt import encode_chat
from cream_plugin.rewarders.judgements import JudgementSampler
from cream_plugin.rewarders.meta_judge import (
    DEFAULT_ANSWER_PREFIX,
    MetaJudge,
    build_meta_messages,
)
from cream_plugin.rewarders.meta_rewarding import MetaRewardingSettings, judge_rows, meta_pairs
from cream_plugin.rewarders.pairwise_judge import verdict_token_ids

# -- length control ---------------------------------------------------------------------------


def test_length_control_picks_shortest_top_and_longest_bottom():
    scores = [4.0, 3.9, 1.0, 1.05, 2.5]
    lengths = [300, 40, 10, 200, 5]
    # rho 0.1: top tier >= 3.7 -> {0, 1}, shortest is 1; bottom tier <= 1.3 -> {2, 3}, longest 3
    choice = select_actor_pair(scores, lengths, rho=0.1)
    assert (choice.chosen, choice.rejected) == (1, 3)
    # rho 0: SRLM's best vs worst
    choice = select_actor_pair(scores, lengths, rho=0.0)
    assert (choice.chosen, choice.rejected) == (0, 2)


def test_length_control_breaks_score_ties_by_length_and_skips_flat_prompts():
    choice = select_actor_pair([3.0, 3.0, 1.0, 1.0], [50, 20, 5, 9], rho=0.0)
    assert (choice.chosen, choice.rejected) == (1, 3)
    assert select_actor_pair([2.0, 2.0, 2.0], [1, 2, 3], rho=0.2) is None
    assert select_actor_pair([2.0, np.nan], [1, 2], rho=0.2) is None
    # NaN responses are left out, never chosen
    choice = select_actor_pair([np.nan, 5.0, 1.0], [1, 100, 50], rho=0.3)
    assert (choice.chosen, choice.rejected) == (1, 2)


@pytest.mark.parametrize("rho", [-0.1, 0.5, 1.0])
def test_length_control_refuses_overlapping_tiers(rho):
    with pytest.raises(ConfigError, match="length_control_rho"):
        select_actor_pair([1.0, 2.0], [1, 1], rho=rho)


# -- battles, position weights, strengths -----------------------------------------------------


def test_position_weights_favour_the_position_that_wins_less():
    # the first position wins 3 of 4 readings: its wins count 1/4, the second's 3/4
    battles = [Battles(np.array([[np.nan, 1.0], [1.0, np.nan]])),
               Battles(np.array([[np.nan, 1.0], [0.0, np.nan]]))]
    w1, w2 = position_weights(battles, "probability")
    assert (w1, w2) == pytest.approx((0.25, 0.75))


def test_battle_matrix_counts_wins_from_both_positions():
    p = np.array([[np.nan, 0.8], [0.3, np.nan]])  # 0 first beats 1 w.p. .8; 1 first beats 0 .3
    b = battle_matrix(Battles(p), (0.4, 0.6), "probability")
    assert b[0, 1] == pytest.approx(0.4 * 0.8 + 0.6 * (1 - 0.3))
    assert b[1, 0] == pytest.approx(0.4 * 0.3 + 0.6 * (1 - 0.8))
    assert b[0, 0] == b[1, 1] == 0.0


def test_bradley_terry_orders_by_wins_and_stays_finite_for_a_clean_sweep():
    b = np.array([[0, 2, 2], [0, 0, 1.5], [0, 0.5, 0]], dtype=float)
    strengths = bradley_terry(b)
    assert np.all(np.isfinite(strengths))
    assert list(np.argsort(-strengths)) == [0, 1, 2]
    # the gradient of the (ridge-penalised) log-likelihood vanishes at the answer
    diff = strengths[:, None] - strengths[None, :]
    win = 1 / (1 + np.exp(-diff))
    grad = (b * (1 - win) - b.T * win).sum(axis=1) - 1e-3 * strengths
    assert np.abs(grad).max() < 1e-8


def test_judge_pair_is_strongest_vs_weakest_and_none_when_tied():
    p = np.array([[np.nan, 0.9, 0.9], [0.2, np.nan, 0.6], [0.1, 0.5, np.nan]])
    choice = select_judge_pair(Battles(p), (0.5, 0.5))
    assert (choice.chosen, choice.rejected) == (0, 2)
    tied = np.array([[np.nan, 0.5], [0.5, np.nan]])
    assert select_judge_pair(Battles(tied), (0.5, 0.5)) is None
    # hard verdicts: a judge that always says "first" wins nothing for anyone
    always_first = np.array([[np.nan, 0.9], [0.7, np.nan]])
    assert select_judge_pair(Battles(always_first), (0.5, 0.5), "hard") is None
    assert select_judge_pair(Battles(always_first), (0.5, 0.5), "probability").chosen == 0


def test_most_uncertain_response_has_the_largest_score_variance():
    scores = np.array([[3, 3, 3], [1, 5, 3], [2, np.nan, 4], [np.nan, np.nan, 1]], dtype=float)
    assert most_uncertain(scores) == 1
    assert most_uncertain(np.array([[np.nan, 1.0]])) is None


# -- the model parts (tiny model) -------------------------------------------------------------

PROMPTS = [[{"role": "user", "content": "What is 2+3?"}],
           [{"role": "user", "content": "Name a gas."}]]
RESPONSES = [["5", "It is five.", "4"], ["oxygen", "neon is a noble gas", "rock"]]


def test_meta_judge_reads_both_orders_from_the_logits(tiny_model, tiny_tokenizer):
    judge = MetaJudge(tiny_model, tiny_tokenizer, batch_size=2)
    texts = ["Relevant and right.\nScore: 4", "Wrong.\nScore: 1", "Wrong.\nScore: 1"]
    [battles] = judge.battles(PROMPTS[:1], ["5"], [texts])
    table = battles.first_wins
    assert table[1, 2] == table[2, 1] == 0.5  # identical judgements tie without a forward
    verdicts = verdict_token_ids(tiny_tokenizer, ("A", "B"))
    for m, o in [(0, 1), (1, 0)]:
        ids = encode_chat(tiny_tokenizer,
                          build_meta_messages(PROMPTS[0], "5", texts[m], texts[o],
                                              tiny_tokenizer),
                          suffix=DEFAULT_ANSWER_PREFIX)
        with torch.no_grad():
            logits = tiny_model(input_ids=torch.tensor([ids])).logits[0, -1]
        expected = torch.softmax(logits[list(verdicts)].double(), dim=-1)[0].item()
        assert table[m, o] == pytest.approx(expected, abs=1e-5)


def test_sampled_judgements_are_texts_ending_with_their_verdict(tiny_model, tiny_tokenizer):
    sampler = JudgementSampler(tiny_model, tiny_tokenizer, samples=3, max_new_tokens=8)
    judged = sampler.sample(PROMPTS, RESPONSES)
    assert judged.scores.shape == (2, 3, 3)
    assert np.isfinite(judged.scores).all() and (judged.scores >= 0).all()
    assert judged.valid_mass.shape == (2, 3, 3)
    for i in range(2):
        for k in range(3):
            assert len(judged.texts[i][k]) == 3
            for text in judged.texts[i][k]:
                assert text.rsplit("\n", 1)[-1] in {f"Score: {p}" for p in range(6)}
    assert judged.counts["judgements"] == 18
    means = judged.response_scores()
    assert means[0, 1] == pytest.approx(judged.scores[0, 1].mean())


def test_generate_mode_counts_unparsed_judgements(tiny_model, tiny_tokenizer):
    judged = JudgementSampler(tiny_model, tiny_tokenizer, samples=2, mode="generate",
                              max_new_tokens=6).sample(PROMPTS, RESPONSES)
    unparsed = int(np.isnan(judged.scores).sum())
    assert judged.counts["unparsed_judgements"] == unparsed
    assert judged.counts["judgements"] == 12


def test_judge_pairs_come_from_two_judgements_of_one_response(tiny_model, tiny_tokenizer):
    samples = [{"prompt_id": f"p{i}", "prompt": p, "responses": r}
               for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES, strict=True))]
    settings = MetaRewardingSettings(judgements=3, judge_max_new_tokens=8)
    judged, manifest = judge_rows(tiny_model, tiny_tokenizer, samples, settings, seed=0)
    assert manifest["counts"]["judgements"] == 18
    assert manifest["counts"]["meta_judged_prompts"] == 2
    pairs, pm = meta_pairs(samples, judged, settings)
    judge = [p for p in pairs if p["role"] == "judge"]
    actor = [p for p in pairs if p["role"] == "actor"]
    assert pm["judge_pairs"] == len(judge) and pm["actor_pairs"] == len(actor)
    assert len(judge) >= 1 and len(actor) >= 1
    for pair in judge:
        row = next(r for r in judged if f"{r['prompt_id']}/judge" == pair["prompt_id"])
        k = row["meta_response"]
        options = row["judgements"][k]
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert chosen in options and rejected in options and chosen != rejected
        assert pair["prompt"] == row["meta_judge_prompt"]  # the rubric prompt of response k
        assert pair["chosen_reward"] > pair["rejected_reward"]
    for pair in actor:
        assert pair["chosen_reward"] > pair["rejected_reward"]
    validate_pair_rows(pairs, "meta-rewarding pairs")
    no_judge, _ = meta_pairs(samples, judged, MetaRewardingSettings(judge_pairs=False))
    assert all(p["role"] == "actor" for p in no_judge)


def test_settings_refuse_unknown_options_and_bad_values():
    with pytest.raises(ConfigError, match="unknown option"):
        MetaRewardingSettings.from_options({"rho": 0.1})
    with pytest.raises(ConfigError, match="judge_mode"):
        MetaRewardingSettings(judge_mode="probability")
    with pytest.raises(ConfigError, match="judgements"):
        MetaRewardingSettings(judgements=1)
