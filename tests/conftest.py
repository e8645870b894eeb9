"""Shared fixtures: the in-process tiny model, the local data folder, a clean plugin manager."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cream_plugin.plugins.manager import reset_plugin_manager

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from cream_plugin.testing import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture
def tiny_model(tiny_tokenizer):
    from cream_plugin.testing import build_tiny_model

    return build_tiny_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny checkpoint folder (model + tokenizer), built once per session."""
    from cream_plugin.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The local benchmark data (CREAM_DATA_DIR, else ../shared/data beside the repo)."""
    path = Path(os.environ.get("CREAM_DATA_DIR") or SHARED_DATA)
    if not path.is_dir():
        pytest.skip(f"no local data folder at {path}; set CREAM_DATA_DIR")
    return path


@pytest.fixture
def fresh_plugins():
    """A plugin manager rebuilt for this test and forgotten after it."""
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def tiny_run_dir(tmp_path, tiny_model_dir) -> Path:
    """A small run folder in the pipeline's format (cards and push tests): config.json, the SFT
    checkpoint M1, iteration 1's samples, consistency and pairs of method cream, the checkpoint
    cream/M2 trained on them, an empty pairs artifact (a method that found no pairs) and
    results rows for M1 and cream/M2. Written with the real Artifact API."""
    import json
    import shutil

    from cream_plugin.config import load_config
    from cream_plugin.loop.artifacts import Artifact
    from cream_plugin.report.results import append_results
    from cream_plugin.testing import PAIR_BAD, PAIR_GOOD, PAIR_PROMPTS

    run = tmp_path / "study-run"
    config = load_config(overrides=["methods=[cream, oracle]", "model.name=smollm2-135m-instruct"])
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    def copy_model(folder: Path) -> None:
        shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)

    m1 = Artifact(run, "M1", "h-sft", {"base": "M0:abc123"})
    m1.write_folder(copy_model, method="sft", iteration=1, step="sft", examples=8)
    prompts = [[{"role": "user", "content": p}] for p in PAIR_PROMPTS]
    samples = Artifact(run, "shared/iter1/samples", "h-s", {"model": m1.digest})
    samples.write_rows(
        [{"prompt_id": f"p{i}", "prompt": p, "source": "arc_easy", "reference": "B",
          "iteration": 1, "responses": [PAIR_GOOD[i], PAIR_BAD[i], "x"]}
         for i, p in enumerate(prompts)],
        method="shared", iteration=1, step="sample",
    )
    cons = Artifact(run, "cream/iter1/consistency", "h-c", {"logps": samples.digest + ":implicit"})
    cons.write_rows(
        [{"prompt_id": f"p{i}", "C": c} for i, c in enumerate((0.2, 0.6, 0.9, 1.0))],
        method="cream", iteration=1, step="consistency",
        summary={"C": {"mean": 0.675, "std": 0.3, "n": 4},
                 "kendall": {"mean": 0.35, "std": 0.6, "n": 4}},
    )
    pairs = Artifact(run, "cream/iter1/pairs", "h-p",
                  {"samples": samples.digest, "consistency": cons.digest})
    pairs.write_rows(
        [{"prompt_id": f"p{i}", "prompt": p,
          "chosen": [{"role": "assistant", "content": PAIR_GOOD[i]}],
          "rejected": [{"role": "assistant", "content": PAIR_BAD[i]}],
          "chosen_reward": 1.0, "rejected_reward": -1.0, "consistency": c,
          "ref_chosen_logps": -10.0 - i, "ref_rejected_logps": -12.0 - i}
         for i, (p, c) in enumerate(zip(prompts, (0.2, 0.6, 0.9, 1.0), strict=True))],
        method="cream", iteration=1, step="pairs", prompts=4, skipped=0,
    )
    Artifact(run, "oracle/iter1/pairs", "h-o", {"samples": samples.digest}).write_rows(
        [], method="oracle", iteration=1, step="pairs", prompts=4, skipped=4
    )
    m2 = Artifact(run, "cream/M2", "h-train", {"pairs": pairs.digest, "base": m1.digest})
    m2.write_folder(copy_model, method="cream", iteration=1, step="train", pairs=4,
                    mode="dynamic")
    (run / "cream" / "M2.train_log.json").write_text(json.dumps([{"loss": 0.69, "step": 1}]))
    append_results(run, [
        {"method": m, "iteration": t, "task": "cream_arc_easy", "metric": "acc", "value": v,
         "stderr": 0.1, "limit": 4, "seconds": 1.0}
        for m, t, v in (("sft", 1, 0.25), ("cream", 2, 0.5))
    ])
    (run / "report.md").write_text("# Run report\n")
    return run
