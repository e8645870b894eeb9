"""The run report on a synthetic run folder: tables, picked metrics, plots, last row wins."""

from __future__ import annotations

import json

import pytest

from cream_plugin.errors import DataError
from cream_plugin.loop.artifacts import append_jsonl
from cream_plugin.report.markdown import write_report
from cream_plugin.report.results import main_metric


def _run_dir(tmp_path):
    results = []
    for method in ("cream", "srlm"):
        for it in (1, 2, 3):
            for metric, value in (("acc,none", 0.40 + 0.01 * it), ("acc_norm,none", 0.9)):
                results.append(
                    {
                        "method": method,
                        "iteration": it,
                        "task": "arc_easy",
                        "metric": metric,
                        "value": value,
                        "stderr": 0.02,
                        "limit": 100,
                        "seconds": 3.0,
                    }
                )
            for metric, value in (
                ("exact_match,strict-match", 0.05 * it),
                ("exact_match,flexible-extract", 0.5),
            ):
                results.append(
                    {
                        "method": method,
                        "iteration": it,
                        "task": "gsm8k",
                        "metric": metric,
                        "value": value,
                        "stderr": 0.01,
                        "limit": 16,
                        "seconds": 9.0,
                    }
                )
    # a resumed run re-wrote one row: the last one wins
    results.append(
        {
            "method": "cream",
            "iteration": 3,
            "task": "arc_easy",
            "metric": "acc,none",
            "value": 0.55,
            "stderr": 0.03,
            "limit": 100,
            "seconds": 3.0,
        }
    )
    append_jsonl(tmp_path / "results.jsonl", results)
    consistency = [
        {
            "method": "cream",
            "iteration": it,
            "metric": m,
            "mean": 0.5 + 0.1 * it,
            "std": 0.1,
            "n": 64,
        }
        for it in (2, 3)
        for m in ("C", "kendall", "spearman", "toporder")
    ]
    append_jsonl(tmp_path / "consistency.jsonl", consistency)
    timings = [
        {"method": "cream", "iteration": 2, "stage": s, "seconds": sec}
        for s, sec in (("sample", 10.0), ("reward", 5.0), ("train", 20.0))
    ]
    append_jsonl(tmp_path / "timings.jsonl", timings)
    return tmp_path


def test_report_tables_and_plots(tmp_path):
    run_dir = _run_dir(tmp_path)
    path = write_report(run_dir)
    text = path.read_text()
    assert path == run_dir / "report.md"
    assert "| method | model | arc_easy (acc) | gsm8k (exact_match) |" in text
    assert "| cream | M1 | 41.00 ± 2.00 | 5.00 ± 1.00 |" in text
    assert "| cream | M3 | 55.00 ± 3.00 | 15.00 ± 1.00 |" in text  # the rewritten row
    assert "| srlm | M2 | 42.00 ± 2.00 | 10.00 ± 1.00 |" in text
    assert "90.00" not in text and "50.00" not in text  # acc_norm / flexible not shown
    assert "| method | models | C | kendall | spearman | toporder | n |" in text
    assert "| cream | M2 vs M1 | 0.700 ± 0.100 |" in text
    assert "| cream | 2 | 10.0 | 5.0 | 20.0 | 35.0 |" in text
    for png in ("scores.png", "consistency.png"):
        assert f"(plots/{png})" in text
        assert (run_dir / "plots" / png).read_bytes()[:4] == b"\x89PNG"


def test_report_command_and_errors(tmp_path, capsys):
    from cream_plugin.cli import main

    assert main(["report", str(tmp_path)]) == 1
    assert "no results.jsonl" in capsys.readouterr().err
    (tmp_path / "results.jsonl").write_text(json.dumps({"method": "x"}) + "\n")
    with pytest.raises(DataError, match=r"results\.jsonl:1: missing field"):
        write_report(tmp_path)
    (tmp_path / "results.jsonl").unlink()
    _run_dir(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").is_file()


def test_main_metric_choice():
    assert main_metric("gsm8k", ["exact_match,flexible-extract", "exact_match,strict-match"]) == (
        "exact_match,strict-match"
    )
    assert main_metric("arc_challenge", ["acc_norm,none", "acc,none"]) == "acc,none"
    assert main_metric("custom", ["f1"]) == "f1"


def test_report_says_how_benchmark_items_were_chosen(tmp_path) -> None:
    from cream_plugin.report.markdown import item_selection

    assert item_selection(tmp_path) == ""
    (tmp_path / "evals").mkdir()
    items = {"cream_arc_easy": {"rule": "seeded sample (seed 7)", "of": 2376,
                                "doc_ids": [3, 90, 1200]},
             "cream_gsm8k": {"rule": "all", "of": 2}}
    for name in ("sft-M1", "cream-M2"):
        (tmp_path / "evals" / f"{name}.manifest.json").write_text(json.dumps({"items": items}))
    text = item_selection(tmp_path)
    assert text.startswith("Benchmark items: cream_arc_easy seeded sample (seed 7), 3 of 2376; "
                           "cream_gsm8k all, 2 of 2.")
    assert "seeds replicate items too" in text
