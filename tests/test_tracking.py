"""Experiment tracking: ``training.report_to`` checked, one tracker run per stage grouped by the
run's name, read back from TensorBoard's event files and Trackio's local store (offline)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cream_plugin.config import load_config
from cream_plugin.errors import ConfigError
from cream_plugin.testing import PAIR_BAD, PAIR_GOOD, PAIR_PROMPTS
from cream_plugin.trainers.tracking import normalize_report_to, track, tracking_kwargs

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("cream/M2", "cream/M3")


def pair_rows() -> list[dict[str, Any]]:
    return [
        {
            "prompt": [{"role": "user", "content": p}],
            "chosen": [{"role": "assistant", "content": g}],
            "rejected": [{"role": "assistant", "content": b}],
            "consistency": c,
        }
        for p, g, b, c in zip(PAIR_PROMPTS, PAIR_GOOD, PAIR_BAD, (0.2, 0.6, 0.9, 1.0), strict=True)
    ]


def train_stage(model: Any, tokenizer: Any, run_dir: Path, stage: str, report_to: Any,
                run_name: str | None) -> Any:
    """One pipeline-like stage: a tiny CREAMTrainer with the stage's tracking arguments."""
    from datasets import Dataset

    from cream_plugin.trainers.cream_trainer import CREAMConfig, CREAMTrainer

    args = CREAMConfig(
        output_dir=str(run_dir / f".{stage.replace('/', '-')}.scratch"),
        use_cpu=True, bf16=False, max_length=64, per_device_train_batch_size=2,
        save_strategy="no", logging_steps=1, num_train_epochs=1, seed=0, learning_rate=1e-3,
        **tracking_kwargs(report_to, run_name, stage=stage, run_dir=run_dir),
    )
    trainer = CREAMTrainer(model=model, args=args, train_dataset=Dataset.from_list(pair_rows()),
                           processing_class=tokenizer)
    with track(trainer, stage=stage, run_dir=run_dir, run_name=run_name):
        trainer.train()
    return trainer


def test_report_to_is_checked_before_training() -> None:
    assert normalize_report_to("none") == []
    assert normalize_report_to(None) == []
    assert normalize_report_to([]) == []
    assert normalize_report_to(["none"]) == []
    assert normalize_report_to("tensorboard, trackio,tensorboard") == ["tensorboard", "trackio"]
    assert normalize_report_to(["trackio"]) == ["trackio"]
    with pytest.raises(ConfigError, match=r"training\.report_to: unknown tracker 'tensorbord'"):
        normalize_report_to(["tensorbord"])
    with pytest.raises(ConfigError, match="'none' cannot be combined"):
        normalize_report_to("none,tensorboard")
    with pytest.raises(ConfigError, match=r"training\.report_to: expected"):
        normalize_report_to([1, 2])  # type: ignore[list-item]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_uninstalled_tracker_names_its_package() -> None:
    with pytest.raises(ConfigError, match=r"'wandb' is not installed \(pip install wandb\)"):
        normalize_report_to("wandb")


def test_config_field_and_stage_hashes() -> None:
    default = load_config()
    assert default.training.report_to == "none" and default.training.run_name is None
    tracked = load_config(overrides=["training.report_to=[tensorboard, trackio]",
                                     "training.run_name=study"])
    assert tracked.training.report_to == ["tensorboard", "trackio"]
    # Turning a tracker on for a resumed run must not invalidate any stage.
    assert tracked.section_hash("training") == default.section_hash("training")
    assert tracked.section_hash("training", "seed") == default.section_hash("training", "seed")
    beta = load_config(overrides=["training.beta=0.2"])
    assert beta.section_hash("training") != default.section_hash("training")
    with pytest.raises(ConfigError, match=r"training\.report_to"):
        load_config(overrides=["training.report_to=3"])


def test_default_is_quiet(tiny_model, tiny_tokenizer, tmp_path) -> None:
    kwargs = tracking_kwargs("none", None, stage="M1", run_dir=tmp_path)
    assert kwargs == {"report_to": "none", "run_name": "M1"}
    trainer = train_stage(tiny_model, tiny_tokenizer, tmp_path, "M1", "none", None)
    assert trainer.args.report_to == []
    names = {type(cb).__name__ for cb in trainer.callback_handler.callbacks}
    assert not names & {"TensorBoardCallback", "TrackioCallback", "WandbCallback"}
    assert not (tmp_path / "tb").exists()


def test_tracking_kwargs_group_by_run_name(tmp_path) -> None:
    kwargs = tracking_kwargs(["trackio"], None, stage="cream/M3", run_dir=tmp_path / "my-run")
    assert kwargs["report_to"] == ["trackio"]
    assert kwargs["run_name"] == "cream/M3"  # the tracker run is the stage
    assert kwargs["project"] == "my-run"  # grouped under the run folder's name
    assert kwargs["trackio_space_id"] is None and kwargs["trackio_static_space_id"] is False
    assert tracking_kwargs("trackio", "study", stage="M1")["project"] == "study"


def test_tensorboard_event_files_per_stage(tiny_model, tiny_tokenizer, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    for stage in STAGES:
        trainer = train_stage(tiny_model, tiny_tokenizer, run_dir, stage, ["tensorboard"], None)
        logged = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
        assert len(logged) == 2  # 4 pairs, batch 2, a log every step
        folder = run_dir / "tb" / stage
        assert list(folder.glob("events.out.tfevents.*")), f"no event file in {folder}"
        events = EventAccumulator(str(folder))
        events.Reload()
        assert "train/loss" in events.Tags()["scalars"]
        read = [(e.step, e.value) for e in events.Scalars("train/loss")]
        assert [s for s, _ in read] == [s for s, _ in logged]
        assert [v for _, v in read] == pytest.approx([v for _, v in logged], rel=1e-6)
        assert "train/consistency/mean" in events.Tags()["scalars"]
    assert sorted(p.name for p in (run_dir / "tb" / "cream").iterdir()) == ["M2", "M3"]


def test_wandb_group_is_the_run_name_during_training(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("WANDB_RUN_GROUP", "before")
    trainer = SimpleNamespace(args=SimpleNamespace(report_to=["wandb"]),
                              callback_handler=SimpleNamespace(callbacks=[]))
    with track(trainer, stage="cream/M2", run_dir=tmp_path / "study-7"):
        assert os.environ["WANDB_RUN_GROUP"] == "study-7"
    assert os.environ["WANDB_RUN_GROUP"] == "before"


TRACKIO_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys
    from pathlib import Path

    attempts = []

    def refuse(self, address, *args):
        attempts.append(repr(address))
        raise OSError(f"network blocked by the test: {address!r}")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    sys.path.insert(0, sys.argv[2])
    from tests.test_tracking import STAGES, train_stage
    from cream_plugin.testing import build_tiny_model, build_tiny_tokenizer

    run_dir = Path(sys.argv[1])
    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok)
    history = {}
    for stage in STAGES:
        trainer = train_stage(model, tok, run_dir, stage, ["trackio"], "tracking-test")
        history[stage] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    from trackio.sqlite_storage import SQLiteStorage

    runs = SQLiteStorage.get_runs("tracking-test")
    logs = {r: [x["train/loss"] for x in SQLiteStorage.get_logs("tracking-test", r)
                if x.get("train/loss") is not None] for r in runs}
    print("RESULT " + json.dumps({"attempts": attempts, "runs": runs, "logs": logs,
                                  "history": history}))
    """
)


@pytest.mark.slow  # a subprocess (Trackio reads TRACKIO_DIR at import): ~12 s
def test_trackio_writes_its_local_store_offline(tmp_path) -> None:
    pytest.importorskip("trackio")
    script = tmp_path / "trackio_run.py"
    script.write_text(TRACKIO_SCRIPT)
    store = tmp_path / "trackio-store"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKIO_", "SPACE_"))}
    env.update(TRACKIO_DIR=str(store), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run"), str(REPO_ROOT)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["attempts"] == []  # not one network connection was tried
    assert (store / "tracking-test.db").is_file()  # project = the run's name
    assert result["runs"] == list(STAGES)  # one Trackio run per stage
    for stage in STAGES:
        assert result["logs"][stage] == pytest.approx(result["history"][stage], rel=1e-6)
        assert len(result["logs"][stage]) == 2
