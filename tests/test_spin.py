"""The built-in ``spin`` method (Chen et al., 2024): the human response of every seed SFT prompt
is chosen over M_t's own sample, one iteration end to end, resume, and that it is written
against the public method API only."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from cream_plugin.config import load_config
from cream_plugin.errors import ConfigError, DataError
from cream_plugin.loop.graph import StageGraph
from cream_plugin.loop.runner import Runner
from cream_plugin.loop.stage import given_rows
from cream_plugin.loop.stages.train import TrainStage
from cream_plugin.plugins.builtins import spin
from cream_plugin.plugins.methods import get_method
from tests.test_stages import CTX_OVERRIDES, TinyContext

SPIN_SOURCE = Path(spin.__file__)
PUBLIC_API = "cream_plugin.plugins.api"


def package_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a cream_plugin module other than the public API,
    anywhere in the source (functions and TYPE_CHECKING blocks too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            modules = ["." * node.level + (node.module or "")]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            if (module.startswith((".", "cream_plugin")) or module == "cream_plugin") \
                    and module != PUBLIC_API:
                found.append((node.lineno, module))
    return sorted(found)


def test_the_import_check_finds_a_private_import() -> None:
    source = ("from cream_plugin.plugins.api import StageSpec\nimport numpy\n"
              "def f():\n    from cream_plugin.loop.graph import StageGraph\n"
              "import cream_plugin.ranking.pairs\nfrom . import api\n")
    assert package_imports(source) == [(4, "cream_plugin.loop.graph"),
                                       (5, "cream_plugin.ranking.pairs"), (6, ".")]


def test_spin_imports_only_the_public_method_api() -> None:
    assert package_imports(SPIN_SOURCE.read_text(encoding="utf-8")) == []
    imported = {alias.name for node in ast.walk(ast.parse(SPIN_SOURCE.read_text()))
                if isinstance(node, ast.ImportFrom) and node.module == PUBLIC_API
                for alias in node.names}
    from cream_plugin.plugins import api

    assert imported <= set(api.__all__)


def test_spin_is_registered_with_its_options(fresh_plugins, capsys) -> None:
    from cream_plugin.cli import main

    method = get_method("spin")
    assert method.trains and method.reward is None and method.build_iteration is not None
    assert dict(method.options) == {"decoding": "sampled", "prompts": None,
                                    "previous_pairs": False}
    assert main(["plugins", "--kind", "method"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("method  spin"))
    assert "human response" in line and "'decoding': 'sampled'" in line


def test_split_conversation_keeps_earlier_turns_as_the_prompt() -> None:
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
             {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"},
             {"role": "assistant", "content": "4"}]
    prompt, human = spin.split_conversation({"messages": turns}, "row 1")
    assert prompt == turns[:-1] and human == "4"
    for bad, why in ((turns[:-1], "last turn must be the assistant's"),
                     ([{"role": "assistant", "content": "4"}], "no user turn"),
                     ([*turns[:-1], {"role": "assistant", "content": " "}], "no text"),
                     ([], "expected 'messages'")):
        with pytest.raises(DataError, match=f"row 1: .*{why}"):
            spin.split_conversation({"messages": bad}, "row 1")


def spin_config(data_dir: Path, *extra: str):
    return load_config(overrides=[*CTX_OVERRIDES, f"data.data_dir={data_dir}", "methods=[spin]",
                                  "iterations=1", "data.sft_examples=12", *extra])


def spin_graph(config, run_dir: Path) -> StageGraph:
    graph = StageGraph(config, {"spin": get_method("spin")}, run_dir)
    graph.iteration("spin", 1)
    return graph


def seed_responses(data_dir: Path) -> dict[str, str]:
    rows = [json.loads(x) for x in (data_dir / "seed_sft/train.jsonl").read_text().splitlines()]
    return {f"seed_sft/{r['id']}": r["messages"][-1]["content"] for r in rows}


def test_options_are_checked_before_any_work(data_dir, tmp_path) -> None:
    from cream_plugin.loop.preflight import check_method_options

    for option, message in (("decoding=beam", "decoding: expected one of sampled, greedy"),
                            ("prompts=0", "prompts: expected a whole number >= 1")):
        with pytest.raises(ConfigError, match=f"method_options.spin.{message}"):
            spin_graph(spin_config(data_dir, f"method_options.spin.{option}"), tmp_path)
    with pytest.raises(ConfigError, match=r"unknown key 'method_options.spin.beta'.*decoding"):
        check_method_options(spin_config(data_dir, "method_options.spin.beta=1"))
    with pytest.raises(ConfigError, match=r"method_options.spinn: .*unknown method 'spinn'"):
        check_method_options(spin_config(data_dir, "method_options.spinn.prompts=3"))


def test_greedy_decoding_is_one_response_at_temperature_zero(data_dir, tmp_path) -> None:
    sampled = spin_graph(spin_config(data_dir), tmp_path).samples[("spin", 1)]
    assert sampled.decoding() == {"num_responses": 1}
    greedy = spin_graph(spin_config(data_dir, "method_options.spin.decoding=greedy"),
                        tmp_path).samples[("spin", 1)]
    assert greedy.name == "spin/iter1/samples"
    assert greedy.decoding() == {"num_responses": 1, "temperature": 0.0}


def test_the_whole_run_evaluates_and_measures_spin_without_a_same_prompt_pool(
        data_dir, tmp_path) -> None:
    config = spin_config(data_dir, "iterations=2", "methods=[sft,spin,cream]")
    graph = StageGraph(config, {m: get_method(m) for m in config.methods}, tmp_path).whole_run()
    names = {s.name for s in graph}
    assert {"spin/M2", "spin/M3", "evals/spin-M2", "evals/spin-M3", "spin/iter1/movement",
            "spin/iter2/movement", "spin/iter2/exact-kl"} <= names
    assert "cream/iter1/same-prompt-pool" in names
    assert not any(n.startswith("spin/") and n.endswith("same-prompt-pool") for n in names)
    # M2's samples of spin's seed prompts (iteration 2) carry the movement and the exact KL.
    assert graph.nodes["spin/iter1/exact-kl"].samples.name == "spin/iter2/samples"


def test_one_iteration_pairs_each_human_response_against_m_ts_sample(
        data_dir, tmp_path, tiny_tokenizer) -> None:
    """Through the runner on the tiny model, every stage of iteration 1 but training: one
    pair per seed prompt, chosen = that prompt's human response in the seed file, rejected =
    M1's sample of it, with M1's log-probs of both as DPO reference; then a second runner
    reuses every stage without loading a model."""
    config = spin_config(data_dir, "method_options.spin.prompts=5")
    ctx = TinyContext(tmp_path, config, tiny_tokenizer)
    graph = spin_graph(config, tmp_path)
    stages = [s for s in graph if not isinstance(s, TrainStage)]
    assert [s.name for s in stages] == [
        "spin/iter1/prompts", "spin/iter1/samples", "spin/iter1/candidates",
        "spin/iter1/candidates/logps-M1", "spin/iter1/pairs", "spin/iter1/correctness",
        "spin/iter1/evidence"]
    runner = Runner(ctx)
    results = runner.run_graph(stages)

    human = seed_responses(data_dir)
    samples = {r["prompt_id"]: r["responses"] for r in
               results["spin/iter1/samples"].read_rows()}
    assert len(samples) == 5 and all(len(r) == 1 for r in samples.values())
    pairs = results["spin/iter1/pairs"].read_rows()
    assert len(pairs) == 5 - results["spin/iter1/candidates"].manifest()["identical"]
    ref = {r["prompt_id"]: r["logps"] for r in
           results["spin/iter1/candidates/logps-M1"].read_rows()}
    for pair in pairs:
        pid = pair["prompt_id"]
        assert pair["prompt"][-1]["role"] == "user"
        assert pair["chosen"] == [{"role": "assistant", "content": human[pid]}]
        assert pair["rejected"] == [{"role": "assistant", "content": samples[pid][0]}]
        assert pair["consistency"] == 1.0
        assert [pair["ref_chosen_logps"], pair["ref_rejected_logps"]] == ref[pid]
    manifest = results["spin/iter1/pairs"].manifest()
    assert manifest["reward"] == spin.LABEL and manifest["pairs"] == len(pairs)

    # The instruments ran on [human, sample]: the seed prompts have no gold answer.
    evidence = results["spin/iter1/evidence"].read_rows()[0]["evidence"]
    assert {r["reward"] for r in evidence["reward_quality"]} == {spin.LABEL, "random"}
    assert [b["reward"] for b in evidence["biases"]] == [spin.LABEL]
    assert evidence["identical"][0]["share"]["n"] == 5

    loads = list(ctx.loads)
    again = Runner(ctx)
    again.run_graph(stages)
    assert again.reused == [s.name for s in stages] and ctx.loads == loads


def test_a_sample_that_repeats_the_human_response_forms_no_pair(tmp_path, tiny_tokenizer,
                                                                 caplog) -> None:
    ctx = TinyContext(tmp_path, load_config(overrides=CTX_OVERRIDES), tiny_tokenizer)
    ask = [{"role": "user", "content": "Say hi."}]
    prompts = given_rows("spin/iter1/prompts", [
        {"prompt_id": f"p{i}", "prompt": ask, "human": "Hi there.", "reference": None,
         "iteration": 1} for i in range(2)])
    samples = given_rows("spin/iter1/samples", [
        {"prompt_id": "p0", "prompt": ask, "responses": ["Hi there. "]},
        {"prompt_id": "p1", "prompt": ask, "responses": ["Bye."]}])
    runner = Runner(ctx)
    runner.run_graph([prompts, samples])
    candidates = spin.SpinCandidatesStage("spin", 1, prompts, samples)
    found = runner.run(candidates)
    assert [r["rewards"] for r in found.read_rows()] == [[0.0, 0.0], [1.0, 0.0]]
    assert found.manifest()["identical"] == 1
    graph = StageGraph(ctx.config, {}, tmp_path)
    ref = graph.logps(candidates, "M1", scope=candidates.name)
    runner.run(ref)
    pairs = runner.run(spin.SpinPairsStage("spin", 1, candidates, ref))
    assert [p["prompt_id"] for p in pairs.read_rows()] == ["p1"]
    assert pairs.manifest()["skipped"] == 1 and not pairs.manifest()["no_pairs"]


@pytest.mark.slow
def test_smoke_run_of_spin_end_to_end_then_resume(data_dir, tmp_path, monkeypatch) -> None:
    """``cream run --preset smoke --method spin``: both iterations train, every model is
    evaluated, the report and the instruments name spin; the same command again recomputes
    nothing."""
    from cream_plugin.cli import main
    from cream_plugin.loop.artifacts import read_manifests

    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    out = tmp_path / "run"
    command = ["run", "--preset", "smoke", "--method", "spin", "--output", str(out),
               "--set", "evaluation.limit=1", "--set", "evaluation.tasks=[cream_arc_easy]"]
    assert main(command) == 0
    manifests = read_manifests(out)
    assert manifests["spin/M2"]["complete"] and manifests["spin/M2"]["pairs"] == 16
    assert (out / "spin/M3/model.safetensors").is_file()  # the final model (M2 is pruned)
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["method"], r["iteration"]) for r in results} >= {("sft", 1), ("spin", 2),
                                                                 ("spin", 3)}
    human = seed_responses(data_dir)
    for t in (1, 2):
        pairs = [json.loads(x) for x in
                 (out / f"spin/iter{t}/pairs.jsonl").read_text().splitlines()]
        assert pairs and all(p["chosen"][0]["content"] == human[p["prompt_id"]] for p in pairs)
    instruments = json.loads((out / "instruments.json").read_text())
    assert {(m["method"], m["iteration"]) for m in instruments["movement"]} == {
        ("spin", 1), ("spin", 2)}
    assert "human > M_t" in (out / "report.md").read_text()
    assert not any(name.endswith("same-prompt-pool") for name in read_manifests(out))

    before = {n: m["created"] for n, m in read_manifests(out).items()}
    assert main(command) == 0
    assert {n: m["created"] for n, m in read_manifests(out).items()} == before


def test_previous_pairs_adds_the_last_iterations_pairs_scored_under_m_t(
        data_dir, tmp_path, tiny_tokenizer) -> None:
    config = spin_config(data_dir, "iterations=2", "method_options.spin.previous_pairs=true")
    graph = StageGraph(config, {"spin": get_method("spin")}, tmp_path)
    graph.iteration("spin", 1)
    graph.iteration("spin", 2)
    assert graph.nodes["spin/iter1/pairs"].previous is None
    earlier, scored = graph.nodes["spin/iter2/pairs"].previous
    assert earlier.name == "spin/iter1/candidates"
    assert (scored.name, scored.model_key) == ("spin/iter2/previous/logps-spin-M2", "spin/M2")

    ctx = TinyContext(tmp_path, load_config(overrides=CTX_OVERRIDES), tiny_tokenizer)
    ask = [{"role": "user", "content": "Say hi."}]

    def candidates(name: str, samples: list[str]):
        return given_rows(name, [{"prompt_id": f"p{i}", "prompt": ask, "reference": None,
                                  "responses": ["Hi there.", s], "rewards": [1.0, 0.0]}
                                 for i, s in enumerate(samples)])

    now, before = candidates("now", ["Bye.", "No."]), candidates("before", ["Go away."])
    runner = Runner(ctx)
    runner.run_graph([now, before])
    ref_now = graph.logps(now, "M1", scope="t2")
    ref_before = graph.logps(before, "M1", scope="t2/previous")
    runner.run_graph([ref_now, ref_before])
    stage = runner.run(spin.SpinPairsStage("spin", 2, now, ref_now, (before, ref_before)))
    rows = stage.read_rows()
    assert [r["rejected"][0]["content"] for r in rows] == ["Bye.", "No.", "Go away."]
    assert rows[2]["ref_rejected_logps"] == runner.result(ref_before).read_rows()[0]["logps"][1]
    manifest = stage.manifest()
    assert (manifest["prompts"], manifest["pairs"], manifest["previous_pairs"]) == (2, 3, 1)
