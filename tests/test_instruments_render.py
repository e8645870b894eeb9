"""Markdown tables of the instrument sections, on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest
from test_instruments_summary import hand_evidence

from cream_plugin.errors import DataError
from cream_plugin.instruments.collect import compare_models, iteration_evidence
from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.render import (
    cell,
    render_biases,
    render_c_bins,
    render_comparisons,
    render_evidence,
    render_informativeness,
    render_movement,
    render_pool_accuracy,
    render_reward_quality,
    render_same_prompt_pool,
    render_seeds,
    table,
)


def test_table_and_cells():
    assert table(["a", "b"], [["1", "x|y"]]) == "| a | b |\n|---|---|\n| 1 | x\\|y |"
    assert cell(undefined("no pairs")) == "– (no pairs)"
    assert cell(Estimate(0.12345)) == "0.123"
    assert cell(Estimate(0.12345), "pct") == "12.3%"
    assert cell(Estimate(-0.02), "points") == "-2.0"


def test_section_tables_by_hand():
    ev = hand_evidence()
    assert render_pool_accuracy(ev.pool_accuracy).splitlines()[2:] == [
        "| cream | 1 | 31.2% | 27.8%–34.9% | 640 |",
        "| cream | 2 | 40.6% | 36.9%–44.5% | 640 |",
        "| oracle | 1 | – (no responses with a gold answer) | – | 0 |",
    ]
    assert render_same_prompt_pool(ev.same_prompt_pool).splitlines()[2] == (
        "| cream | M1 → M2 | 2 | 31.2% | 40.6% | +9.4 | +4.1 to +14.6 | 128 | 640 |")
    assert render_reward_quality(ev.reward_quality).splitlines()[2] == (
        "| cream | 1 | r_t | 30.0% | 21.9%–39.6% | < 0.001 | 13.8 points | 100 | 120 "
        "| – (not measured) | – | 0 |")
    assert render_informativeness(ev.informativeness).splitlines()[2] == (
        "| cream | 1 | 0.500 | 0.400 to 0.600 | 0.970 | – | 45.0% | 37.5% | +7.5 | +5.0 to "
        "+10.0 | 0.001 | – | 80 |")
    assert render_c_bins(ev.informativeness).splitlines()[2:] == [
        "| cream | 1 | [0, 0.5) | 25.0% | 14.2%–40.2% | 0.002 | 21.5 points | 40 |",
        "| cream | 1 | [0.5, 1] | – (no discordant pairs with C in this bin) | – | – | – | 0 |",
    ]
    assert render_biases(ev.biases).splitlines()[2] == (
        "| cream | 1 | r_t | 0.350 | 0.200 to 0.500 | -0.050 | -0.150 to 0.050 | – | 600 |")
    movement = render_movement(ev.movement).splitlines()
    assert "mean \\|Δ log p\\| /token" in movement[0]
    assert "MC log-ratio new/old at T=0.8 /token" in movement[0]
    assert movement[2] == ("| cream | 1 | M2's samples (iteration 2) | 0.0123 | 0.0100 to 0.0146 "
                           "| 0.0130 | 0.0105 to 0.0155 | – (not measured) | – (no samples of "
                           "pi_t scored under both models) | 0.0500 | – (not measured) | – (not "
                           "measured) | 0.800 | 75.0% |")
    assert render_comparisons(ev.comparisons).splitlines()[2] == (
        "| arc_easy | acc | sft M1 | cream M2 | 48.0% | 50.0% | +2.0 | -1.2 to +5.2 | 0.210 "
        "| – | 15 | 10 | 250 |")
    assert render_seeds(ev.seeds).splitlines()[3] == (
        "| cream M2 | arc_easy acc | 0.450 | 0.400 to 0.500 | – | – | 3 |  |")


def test_render_evidence_has_every_section_in_order():
    text = render_evidence(hand_evidence(), plots={"training curves": "plots/training.png"})
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Bottom line", "## Glossary", "## Summary", "## Pool accuracy",
        "## Pool accuracy on the same prompts",
        "## Reward quality against gold answers",
        "## Is C informative?", "## Label accuracy by C bin", "## Known biases",
        "## Identical responses", "## How far the policy moved",
        "## Paired comparisons on benchmark items", "## Across seeds",
    ]
    assert "![training curves](plots/training.png)" in text
    assert render_evidence(hand_evidence(), level=3).startswith("### Bottom line")


def test_iteration_evidence_from_plain_arrays():
    rng = np.random.default_rng(0)
    correct = (rng.random((40, 4)) < 0.5).astype(float)
    correct[:5] = np.nan  # prompts without a gold answer
    good = correct + rng.random(correct.shape) * 0.1
    c = rng.random(40)
    lengths = rng.integers(3, 50, size=(40, 4))
    responses = [[f"answer {int(x)}" for x in row] for row in lengths // 20]
    ev = iteration_evidence("cream", 1, correct, {"r_t": good, "r_t-1": -good},
                            pair_reward="r_t", consistency=c, lengths=lengths,
                            responses=responses, seed=7)
    assert [r.reward for r in ev.reward_quality] == ["r_t", "r_t-1", "random"]
    assert ev.reward_quality[0].accuracy.value == 1.0
    assert ev.reward_quality[1].accuracy.value == 0.0
    assert ev.pool_accuracy[0].accuracy.n == 35 * 4
    assert ev.informativeness[0].hard.value == 1.0
    assert not ev.informativeness[0].auc.defined  # every label right: AUC needs both classes
    assert [b.reward for b in ev.biases] == ["r_t", "r_t-1"]
    assert ev.identical[0].share.n == 40
    assert "## Reward quality against gold answers" in render_evidence(ev)
    with pytest.raises(DataError, match="pair_reward 'judge' is not among"):
        iteration_evidence("cream", 1, correct, {"r_t": good}, pair_reward="judge")


def test_compare_models_covers_every_pair_baseline_first():
    scores = {"sft M1": {0: 1.0, 1: 0.0, 2: 0.0}, "cream M2": {0: 1.0, 1: 1.0, 2: 0.0},
              "srlm M2": {0: 0.0, 1: 1.0, 2: 1.0}}
    rows = compare_models("arc_easy", "acc", scores)
    assert [(r.model_a, r.model_b) for r in rows] == [
        ("sft M1", "cream M2"), ("sft M1", "srlm M2"), ("cream M2", "srlm M2")]
    assert rows[0].comparison.difference.value == pytest.approx(1 / 3)
    assert rows[0].comparison.mcnemar.b_only == 1
    assert "| arc_easy | acc | cream M2 | srlm M2 |" in render_comparisons(rows)
