"""Several seeds of one config: the report across seeds (mean and t-interval per figure)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.evidence import ComparisonRow, Evidence, PoolAccuracyRow
from cream_plugin.instruments.paired import compare_items
from cream_plugin.report.seeds import seed_dir, seed_evidence, write_seeds_report


def fake_seed_run(folder, acc: float, pool: float, c: float,
                  comparisons: tuple[ComparisonRow, ...] = ()) -> None:
    folder.mkdir(parents=True)
    row = {"method": "cream", "iteration": 2, "task": "cream_arc_easy", "metric": "acc,none",
           "value": acc, "stderr": 0.05, "limit": 10, "seconds": 1.0}
    (folder / "results.jsonl").write_text(json.dumps(row) + "\n")
    (folder / "consistency.jsonl").write_text(json.dumps(
        {"method": "cream", "iteration": 2, "metric": "C", "mean": c, "std": 0.1, "n": 5}) + "\n")
    ev = Evidence(pool_accuracy=[PoolAccuracyRow("cream", 2, Estimate(pool, n=100))],
                  comparisons=list(comparisons))
    (folder / "instruments.json").write_text(json.dumps(ev.to_dict()))


def test_each_figure_is_averaged_across_seeds_with_a_t_interval(tmp_path) -> None:
    accs, pools, cs = [0.40, 0.50, 0.45], [0.30, 0.32, 0.28], [0.6, 0.7, 0.65]
    for s, (a, p, c) in enumerate(zip(accs, pools, cs, strict=True)):
        fake_seed_run(seed_dir(tmp_path, s), a, p, c)
    ev = seed_evidence([seed_dir(tmp_path, s) for s in range(3)])
    by = {(r.label, r.quantity): r.estimate for r in ev.seeds}
    acc = by[("cream M2", "cream_arc_easy acc")]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(accs), scale=stats.sem(accs))
    assert acc.value == pytest.approx(np.mean(accs)) and acc.n == 3
    assert (acc.low, acc.high) == (pytest.approx(low), pytest.approx(high))
    assert by[("cream, iteration 2", "consistency C")].value == pytest.approx(np.mean(cs))
    logits = [np.log((100 * p + 0.5) / (100 - 100 * p + 0.5)) for p in pools]
    pool = by[("cream, iteration 2", "pool accuracy")]
    assert pool.value == pytest.approx(1 / (1 + np.exp(-np.mean(logits))))
    assert 0 < pool.low < pool.value < pool.high < 1 and "logit" in pool.method
    report = write_seeds_report(tmp_path, [0, 1, 2]).read_text()
    assert "## Across seeds" in report and "seed-2/report.md" in report


def test_comparisons_per_seed_then_across_seeds_with_forest_plots(tmp_path) -> None:
    """Each seed's McNemar difference, then their mean with a t-interval over the seeds."""
    rng = np.random.default_rng(5)
    diffs = []
    for s in range(3):
        sft = {i: float(x) for i, x in enumerate(rng.random(40) < 0.4)}
        cream = {i: float(x) for i, x in enumerate(rng.random(40) < 0.5)}
        ablation = {i: float(x) for i, x in enumerate(rng.random(40) < 0.45)}
        rows = (ComparisonRow("arc", "acc,none", "sft M1", "cream M2", compare_items(sft, cream)),
                ComparisonRow("arc", "acc,none", "sft M1", "cream-no-rc M2",
                              compare_items(sft, ablation)),
                ComparisonRow("arc", "acc,none", "cream-no-rc M2", "cream M2",
                              compare_items(ablation, cream)),
                ComparisonRow("arc", "acc,none", "sft M1", "cream M1",  # not a headline
                              compare_items(sft, sft)))
        diffs.append(np.mean(list(cream.values())) - np.mean(list(sft.values())))
        fake_seed_run(seed_dir(tmp_path, s), 0.4, 0.3, 0.6, rows)
    ev = seed_evidence([seed_dir(tmp_path, s) for s in range(3)], tmp_path)
    by = {(r.model_a, r.model_b): r for r in ev.seed_comparisons}
    assert set(by) == {("sft M1", "cream M2"), ("sft M1", "cream-no-rc M2"),
                       ("cream-no-rc M2", "cream M2")}
    row = by[("sft M1", "cream M2")]
    ref = stats.ttest_1samp(diffs, 0.0)
    assert [v.seed for v in row.per_seed] == [0, 1, 2]
    assert row.across.value == pytest.approx(np.mean(diffs))
    assert row.across.p_value == pytest.approx(ref.pvalue) and row.across.mde > 0
    assert (tmp_path / row.plot).stat().st_size > 1000
    report = write_seeds_report(tmp_path, [0, 1, 2]).read_text()
    assert report.startswith("# Run report") and report.split("\n## ")[1].startswith("Bottom line")
    assert "## Comparisons with seeds as replicates" in report and f"]({row.plot})" in report
    assert "(within-seed" in report


@pytest.mark.slow
def test_cream_run_with_seeds(tmp_path, data_dir, monkeypatch) -> None:
    from cream_plugin.cli import main

    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    out = tmp_path / "run"
    assert main(["run", "--preset", "smoke", "--method", "cream", "--seeds", "3,4",
                 "--output", str(out), "--set", "iterations=1", "--set", "evaluation.limit=3",
                 "--set", "evaluation.tasks=[cream_arc_easy]"]) == 0
    assert (out / "seed-3" / "report.md").is_file() and (out / "seed-4" / "report.md").is_file()
    samples = [(out / f"seed-{s}" / "shared/iter1/samples.jsonl").read_text() for s in (3, 4)]
    assert samples[0] != samples[1]
    report = (out / "report.md").read_text()
    assert "2 seeds" in report and "## Across seeds" in report
    assert not (out / "cream.lock").exists()
    # The report opens with the bottom line and the glossary, then the summary.
    sections = [s.split("\n")[0] for s in report.split("\n## ")[1:]]
    assert sections[:3] == ["Bottom line", "Glossary", "Summary"]
    bottom = report.split("## Bottom line\n\n")[1].split("\n\n")[0]
    assert bottom.startswith(("Improved", "Nothing measurably improved")) and "|" not in bottom
    # Headline comparison (cream's M2 vs SFT's M1) per seed, then across seeds, with a forest plot.
    evidence = json.loads((out / "instruments.json").read_text())
    rows = evidence["seed_comparisons"]
    assert [(r["model_a"], r["model_b"]) for r in rows] == [("sft M1", "cream M2")]
    assert [v["seed"] for v in rows[0]["per_seed"]] == [3, 4]
    assert (out / rows[0]["plot"]).stat().st_size > 1000 and f"]({rows[0]['plot']})" in report
    # Minimum detectable effects: in the comparison tables and the per-seed reports.
    assert "| MDE |" in report and "MDE" in (out / "seed-3" / "report.md").read_text()
    assert "within-seed" in (out / "seed-3" / "report.md").read_text()
