"""The ``meta-rewarding`` method through the method hook: listed like any method, its options
checked, one iteration and the smoke preset end to end on the tiny model."""

from __future__ import annotations

import json
import types

import pytest

from cream_plugin.errors import ConfigError


def read_rows(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_meta_rewarding_is_a_registered_method_with_its_options(fresh_plugins, capsys) -> None:
    from cream_plugin.cli import main
    from cream_plugin.plugins.registry import components

    method = components("method")["meta-rewarding"].obj
    assert method.build_iteration is not None and method.trains
    assert method.options["length_control_rho"] == 0.2
    assert method.options["judgements"] == 3
    assert main(["plugins"]) == 0
    assert "meta-rewarding" in capsys.readouterr().out


def test_bad_option_is_a_config_error_naming_the_key(fresh_plugins, tmp_path) -> None:
    from cream_plugin.config import load_config
    from cream_plugin.loop.graph import StageGraph
    from cream_plugin.plugins.methods import resolve_methods

    config = load_config(overrides=["methods=[meta-rewarding]",
                                    "method_options={meta-rewarding: {length_control_rho: 0.7}}"])
    graph = StageGraph(config, resolve_methods(config.methods), tmp_path)
    with pytest.raises(ConfigError, match="length_control_rho"):
        graph.whole_run()


class DigestsOnly:
    """Stands in for a run context where a stage's identity only needs upstream digests."""

    def result(self, stage):
        return types.SimpleNamespace(digest=f"digest-of-{stage.name}")

    def model_digest(self, key):
        return f"model-{key}"


def stage_inputs(tmp_path, options: str) -> dict[str, dict[str, str]]:
    from cream_plugin.config import load_config
    from cream_plugin.loop.graph import StageGraph
    from cream_plugin.plugins.methods import resolve_methods

    config = load_config(overrides=["methods=[meta-rewarding]", "iterations=1",
                                    f"method_options={{meta-rewarding: {{{options}}}}}"])
    graph = StageGraph(config, resolve_methods(config.methods), tmp_path).whole_run()
    return {spec.name: spec.inputs(DigestsOnly()) for spec in graph
            if spec.name.startswith("meta-rewarding/iter1/")}


def test_pair_options_change_only_the_pairs_stage(fresh_plugins, tmp_path) -> None:
    base = stage_inputs(tmp_path, "length_control_rho: 0.2")
    rho = stage_inputs(tmp_path, "length_control_rho: 0.1")
    judging = stage_inputs(tmp_path, "judgements: 4")
    judge_stage = "meta-rewarding/iter1/rewards-meta-judge-M1"
    pairs_stage = "meta-rewarding/iter1/pairs"
    assert base[judge_stage] == rho[judge_stage]
    assert base[pairs_stage] != rho[pairs_stage]
    assert base[judge_stage] != judging[judge_stage]
    assert base[pairs_stage] == judging[pairs_stage]  # its identity holds the judged digest


@pytest.mark.slow
def test_one_iteration_end_to_end(fresh_plugins, tmp_path, data_dir, monkeypatch) -> None:
    """Sample, judge N times, meta-judge, mixed actor + judge pairs, DPO, evaluate, report."""
    from cream_plugin.cli import main

    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    out = tmp_path / "run"
    code = main(["run", "--preset", "smoke", "--method", "meta-rewarding", "--output", str(out),
                 "--set", "iterations=1", "--set", "evaluation.limit=1",
                 "--set", "evaluation.tasks=[cream_arc_easy]",
                 "--set", "method_options={meta-rewarding: {judge_max_new_tokens: 8}}"])
    assert code == 0
    samples = read_rows(out / "shared/iter1/samples.jsonl")
    judged = read_rows(out / "meta-rewarding/iter1/rewards-meta-judge-M1.jsonl")
    assert [r["prompt_id"] for r in judged] == [r["prompt_id"] for r in samples]
    for row, sample in zip(judged, samples, strict=True):
        assert len(row["rewards"]) == len(sample["responses"])
        assert all(len(texts) == 3 for texts in row["judgements"])
    pairs = read_rows(out / "meta-rewarding/iter1/pairs.jsonl")
    roles = {p["role"] for p in pairs}
    assert roles == {"actor", "judge"}
    by_id = {r["prompt_id"]: r for r in judged}
    for pair in pairs:
        if pair["role"] == "judge":
            row = by_id[pair["prompt_id"].removesuffix("/judge")]
            options = row["judgements"][row["meta_response"]]
            assert pair["chosen"][0]["content"] in options
            assert pair["rejected"][0]["content"] in options
    manifest = json.loads((out / "meta-rewarding/iter1/pairs.manifest.json").read_text())
    assert manifest["pairs"] == len(pairs)
    assert manifest["actor_pairs"] + manifest["judge_pairs"] == len(pairs)
    assert (out / "meta-rewarding/M2/model.safetensors").is_file()
    results = read_rows(out / "results.jsonl")
    assert ("meta-rewarding", 2) in {(r["method"], r["iteration"]) for r in results}
    report = (out / "report.md").read_text()
    assert "meta-rewarding" in report and "meta-judge-M1" in report
