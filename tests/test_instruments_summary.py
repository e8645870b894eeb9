"""The plain-language summary: deterministic sentences sorted by significance, with caveats."""

from __future__ import annotations

import json

import pytest

from cream_plugin.errors import DataError
from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.evidence import (
    BiasRow,
    ComparisonRow,
    Evidence,
    IdenticalRow,
    InformativenessRow,
    MovementRow,
    PoolAccuracyRow,
    RewardQualityRow,
    SamePromptPoolRow,
    SeedRow,
)
from cream_plugin.instruments.informativeness import BinAccuracy
from cream_plugin.instruments.intervals import proportion
from cream_plugin.instruments.movement import Movement
from cream_plugin.instruments.paired import McNemar, PairedComparison
from cream_plugin.instruments.summary import findings, render_summary
from cream_plugin.instruments.verdicts import (
    FACT,
    NOT_SIGNIFICANT,
    SIGNIFICANT,
    UNMEASURED,
    significant,
)


def hand_evidence() -> Evidence:
    """One row of every kind, hand-made: some significant, some not, one unmeasured."""
    return Evidence(
        pool_accuracy=[
            PoolAccuracyRow("cream", 1, proportion(200, 640)),
            PoolAccuracyRow("cream", 2, proportion(260, 640)),
            PoolAccuracyRow("oracle", 1, undefined("no responses with a gold answer")),
        ],
        same_prompt_pool=[SamePromptPoolRow("cream", 1, proportion(200, 640),
                                            proportion(260, 640),
                                            Estimate(0.094, 0.041, 0.146, n=128))],
        reward_quality=[
            RewardQualityRow("cream", 1, "r_t", proportion(30, 100, chance=0.5), 120, 100),
            RewardQualityRow("cream", 1, "random", proportion(52, 100, chance=0.5), 120, 100),
        ],
        informativeness=[InformativenessRow(
            "cream", 1,
            auc=Estimate(0.5, 0.4, 0.6, n=80, p_value=0.97,
                         reason="30 correct and 50 wrong labels"),
            soft=Estimate(0.45, 0.42, 0.48, n=80), hard=proportion(30, 80),
            difference=Estimate(0.075, 0.05, 0.1, n=80, p_value=0.001),
            bins=[BinAccuracy(0, 0.5, proportion(10, 40, chance=0.5)),
                  BinAccuracy(0.5, 1, undefined("no discordant pairs with C in this bin"))],
        )],
        biases=[BiasRow("cream", 1, "r_t", Estimate(0.35, 0.2, 0.5, n=600, reason="150 prompts"),
                        Estimate(-0.05, -0.15, 0.05, n=600))],
        identical=[IdenticalRow("cream", 1, proportion(12, 128))],
        movement=[MovementRow(
            "cream", 1,
            Movement(Estimate(0.0123, 0.01, 0.0146, n=20000),
                     Estimate(0.013, 0.0105, 0.0155, n=20000),
                     Estimate(0.05, n=20000),
                     mc_reverse=undefined("no samples of pi_t scored under both models"),
                     kl_on="M2's samples (iteration 2)", version=2),
            margins=Estimate(0.8, n=16), accuracies=Estimate(0.75, n=16))],
        comparisons=[ComparisonRow(
            "arc_easy", "acc", "sft M1", "cream M2",
            PairedComparison(0.48, 0.5, Estimate(0.02, -0.012, 0.052, n=250, p_value=0.21),
                             McNemar(10, 15, 250, 0.21), 0, 0))],
        seeds=[SeedRow("cream − cream-no-rc", "C at M2", Estimate(0.1, 0.02, 0.18, n=3), 0.0),
               SeedRow("cream M2", "arc_easy acc", Estimate(0.45, 0.40, 0.50, n=3))],
    )


def test_significance_rule():
    assert significant(Estimate(0.6, 0.55, 0.65, p_value=0.2), 0.5) is False  # p decides
    assert significant(Estimate(0.6, 0.55, 0.65), 0.5) is True                # else the CI
    assert significant(Estimate(0.6, 0.45, 0.65), 0.5) is False
    assert significant(Estimate(0.6), 0.5) is None
    assert significant(undefined("x"), 0.5) is None


def test_sentences_are_sorted_by_significance():
    by_kind = {}
    for f in findings(hand_evidence()):
        by_kind.setdefault(f.kind, []).append(f.text)
    assert by_kind[SIGNIFICANT] == [
        "cream: pool accuracy of M2 vs M1 on the same prompts (iteration 2's): 40.6% vs 31.2%, "
        "mean per-prompt change +9.4 points (95% CI +4.1 to +14.6, prompt-clustered bootstrap, "
        "n = 128 prompts): the policy got more answers right.",
        "cream, iteration 1: label accuracy of reward r_t: 30.0% of 100 pairs whose "
        "responses differ in correctness (95% CI 21.9%–39.6%; p < 0.001; chance 50%): worse "
        "than chance: its labels are mostly reversed.",
        "cream, iteration 1: soft-label vs hard-label accuracy: 45.0% vs 37.5%, +7.5 points "
        "(95% CI +5.0 to +10.0; p = 0.001, n = 80 pairs): the soft labels are more accurate.",
        "cream, iteration 1: reward r_t vs response length: within-prompt Spearman 0.350 "
        "(95% CI 0.200 to 0.500, n = 600 responses): longer responses score higher.",
        "cream − cream-no-rc, C at M2 across 3 seeds: 0.100 (95% t CI over seeds 0.020 to "
        "0.180); reference 0: above the reference.",
    ]
    assert by_kind[NOT_SIGNIFICANT][0].endswith(
        "p = 0.764; chance 50%): not distinguishable from chance; no difference larger than 13.8 "
        "points was detectable (80% power at this n).")
    assert by_kind[NOT_SIGNIFICANT][-1] == (
        "arc_easy (acc): 1 headline paired comparison(s) between models show no significant "
        "difference (within-seed, n = 250 items each; see the table).")
    assert by_kind[UNMEASURED] == [
        "oracle, iteration 1: pool accuracy: no responses with a gold answer."]
    assert "cream, iteration 1: prompts with all responses identical: 9.4% of 128 (they give no "\
           "pair)." in by_kind[FACT]
    # The exact KL is a size (> 0 for any change), stated as a fact, not tested against 0.
    moved = ("cream, iteration 1: how far the policy moved: exact per-token KL(M_(t+1) || M_t) = "
             "0.0123 nats (95% CI 0.0100 to 0.0146, prompt-clustered bootstrap, n = 20000 tokens "
             "of M2's samples (iteration 2)); reverse KL 0.0130 (0.0105 to 0.0155).")
    assert moved in by_kind[FACT]
    # Pool accuracies of different iterations (different prompts) are facts, never compared.
    assert ("cream, iteration 2: pool accuracy 40.6% (95% CI 36.9%–44.5%, n = 640 responses)."
            in by_kind[FACT])
    assert not any("went from" in f.text for f in findings(hand_evidence()))


def test_summary_is_deterministic_with_headings_and_caveats():
    text = render_summary(hand_evidence())
    assert text == render_summary(hand_evidence())
    assert text.startswith("## Summary\n\nSignificant means a Holm-adjusted p < 0.05 over the "
                           "report's 5 tests")
    order = [text.index(h) for h in ("**Significant**", "**Not significant**",
                                     "**Not measured**", "**Other figures**", "**Caveats**")]
    assert order == sorted(order)
    assert ("- 5 figures have a p-value; they form the report's family of comparisons, and "
            "each is called significant only if its Holm-adjusted p is below 0.05") in text
    assert "1 tested figure(s) rest on fewer than 30 items" in text  # the 3-seed row


def test_reversed_ordering_and_absent_sections():
    ev = Evidence(reward_quality=[RewardQualityRow("srlm", 2, "judge",
                                                   proportion(70, 100, chance=0.5))])
    text = render_summary(ev, heading="# Summary")
    assert "reward judge: 70.0% of 100 pairs" in text and "better than chance" in text
    assert "**Not significant**" not in text and "Pool accuracy treats" not in text
    assert render_summary(Evidence()) == (
        "## Summary\n\nNo instrument produced a figure for this run.\n")
    # Only an MC log-ratio (negative here): a fact under its own name, never read as a verdict.
    mc_only = Evidence(movement=[MovementRow(
        "cream", 1, Movement(mc_forward=Estimate(-0.02, -0.03, -0.01, n=900), version=2),
        undefined("no log"), undefined("no log"))])
    text = render_summary(mc_only)
    assert "MC log-ratio" in text and "not a KL" in text and "flatten" not in text
    assert "**Significant**" not in text


def test_evidence_round_trips_through_json():
    ev = hand_evidence()
    back = Evidence.from_dict(json.loads(json.dumps(ev.to_dict(), allow_nan=False)))
    assert render_summary(back) == render_summary(ev)
    assert back.informativeness[0].bins[1].accuracy.reason.startswith("no discordant")
    assert back.comparisons[0].comparison.mcnemar == McNemar(10, 15, 250, 0.21)
    with pytest.raises(DataError, match=r"evidence.pool_accuracy\[0\]: missing field 'accuracy'"):
        Evidence.from_dict({"pool_accuracy": [{"method": "m", "iteration": 1}]})


def test_a_halved_response_length_is_called_out():
    def row(old: Estimate, new: Estimate) -> Evidence:
        moved = Movement(Estimate(0.5, 0.4, 0.6, n=900), undefined("x"), Estimate(0.6),
                         old, new, version=2)
        return Evidence(movement=[MovementRow("cream-no-rc", 1, moved, undefined("no log"),
                                              undefined("no log"))])

    collapsed = render_summary(row(Estimate(12.0, 10.0, 14.0, n=96),
                                   Estimate(2.1, 1.8, 2.4, n=96)))
    assert "responses average 12.0 tokens from M_t" in collapsed
    assert "less than half the length" in collapsed
    steady = render_summary(row(Estimate(12.0, 10.0, 14.0, n=96),
                                Estimate(11.0, 9.0, 13.0, n=96)))
    assert "responses average 12.0 tokens" in steady and "less than half" not in steady
    # Wide intervals that overlap: the drop is not called out.
    noisy = render_summary(row(Estimate(12.0, 2.0, 22.0, n=8), Estimate(5.0, 0.0, 10.0, n=8)))
    assert "less than half" not in noisy


def test_holm_decides_significance_over_the_family():
    rows = [RewardQualityRow("cream", 1, f"r{i}", proportion(k, 100, chance=0.5))
            for i, k in enumerate((62, 38, 50, 50, 50))]
    found = findings(Evidence(reward_quality=rows))
    raw = [r.accuracy.p_value for r in rows]
    assert raw[0] < 0.05 and raw[1] < 0.05           # significant alone ...
    assert raw[0] * 5 > 0.05 and raw[1] * 4 > 0.05   # ... but not after Holm over 5 tests
    assert [f.kind for f in found] == [NOT_SIGNIFICANT] * 5
    assert "p < 0.05 alone, Holm-adjusted p = " in found[0].text
    assert "over the family of 5 tests" in found[0].text
    strong = findings(Evidence(reward_quality=[
        RewardQualityRow("cream", 1, "r_t", proportion(80, 100, chance=0.5)), *rows[2:]]))
    assert strong[0].kind == SIGNIFICANT


def test_methods_sharing_an_iteration_give_one_sentence():
    shared = proportion(30, 100, chance=0.5)
    ev = Evidence(reward_quality=[RewardQualityRow("cream", 1, "r_t", shared),
                                  RewardQualityRow("cream-no-rc", 1, "r_t", shared),
                                  RewardQualityRow("cream", 2, "r_t", shared)])
    texts = [f.text for f in findings(ev)]
    assert len(texts) == 2
    assert texts[0].startswith("cream and cream-no-rc, iteration 1: label accuracy of reward r_t")
    assert texts[1].startswith("cream, iteration 2:")
    assert "family of 2 tests" not in render_summary(ev) and "report's 2 tests" in \
        render_summary(ev)


def test_bottom_line_says_what_improved_what_did_not_and_what_to_watch():
    from cream_plugin.instruments.bottom_line import bottom_line, render_opening

    lines = bottom_line(hand_evidence())
    assert len(lines) == 3
    assert lines[0].startswith(
        "Improved, beyond chance: cream: pool accuracy of M2 vs M1 on the same prompts")
    assert "1 other comparison(s) showed no significant difference" in lines[1]
    assert lines[2] == ("To watch: the self-assigned reward labels were worse than a coin flip "
                        "in 1 measurement(s) (e.g. cream, iteration 1: label accuracy of reward "
                        "r_t: worse than chance: its labels are mostly reversed); 1 "
                        "significant reward bias(es) (e.g. cream, iteration 1: reward r_t "
                        "vs response length: longer responses score higher).")
    nothing = bottom_line(Evidence(comparisons=hand_evidence().comparisons))
    assert nothing[0].startswith("Nothing measurably improved")
    opening = render_opening(hand_evidence())
    assert opening.startswith("## Bottom line\n\n") and "## Glossary" in opening
    for term in ("M_t", "C", "KL", "AUC", "label accuracy", "pool accuracy"):
        assert f"- **{term}**:" in opening


def test_only_headline_comparisons_join_the_holm_family():
    def row(a: str, b: str, p: float) -> ComparisonRow:
        diff = Estimate(0.1, 0.02, 0.18, n=100, p_value=p, mde=0.12)
        return ComparisonRow("arc", "acc", a, b, PairedComparison(0.4, 0.5, diff,
                                                                  McNemar(5, 15, 100, p), 0, 0))

    rows = [row("sft M1", "cream M3", 0.5), row("sft M1", "cream-no-rc M3", 0.6),
            row("cream-no-rc M3", "cream M3", 0.7), row("sft M1", "cream M2", 0.03),
            row("cream M2", "cream-no-rc M2", 0.8)]
    found = findings(Evidence(comparisons=rows))
    texts = [f.text for f in found]
    # cream M2 vs sft M1 is exploratory: judged on its own p and labelled so.
    assert any(t.startswith("arc (acc): cream M2 vs sft M1") and "exploratory" in t
               and t.count(": cream M2 scores higher") for t in texts)
    assert ("arc (acc): 3 headline paired comparison(s) between models show no significant "
            "difference (within-seed, n = 100 items each; no difference larger than 12 points "
            "was detectable; see the table).") in texts
    assert any("1 exploratory (outside the Holm family)" in t for t in texts)
    assert "over the report's 3 tests" in render_summary(Evidence(comparisons=rows))
