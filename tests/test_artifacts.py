"""Stage artifacts: atomic, complete only with a manifest, invalidated by upstream changes."""

from __future__ import annotations

import json

import pytest

from cream_plugin.errors import DataError
from cream_plugin.loop.artifacts import Artifact, append_jsonl, prune_checkpoints

ROWS = [{"prompt_id": f"p{i}", "responses": ["a", "b"], "score": i * 0.5} for i in range(5)]


def _rows_then_crash(n):
    yield from ROWS[:n]
    raise RuntimeError("killed")


def test_round_trip_and_manifest(tmp_path):
    stage = Artifact(tmp_path, "cream/iter1/samples", "cfg1", {"prompts": "d0"})
    assert not stage.is_complete()
    digest = stage.write_rows(iter(ROWS), empty=0)
    assert stage.is_complete() and stage.digest == digest
    assert stage.read_rows() == ROWS
    m = json.loads((tmp_path / "cream/iter1/samples.manifest.json").read_text())
    assert m["stage"] == "cream/iter1/samples" and m["rows"] == 5 and m["complete"] is True
    assert m["inputs"] == {"prompts": "d0"} and m["empty"] == 0 and m["seconds"] >= 0
    import datasets

    ds = datasets.load_dataset("json", data_files=str(stage.rows_path), split="train")
    assert ds.num_rows == 5 and ds[1]["responses"] == ["a", "b"]
    # no temp files left behind
    assert sorted(p.name for p in stage.rows_path.parent.iterdir()) == [
        "samples.jsonl",
        "samples.manifest.json",
    ]


def test_crash_mid_write_leaves_nothing_complete(tmp_path):
    stage = Artifact(tmp_path, "samples", "cfg1")
    stage.write_rows(ROWS)
    again = Artifact(tmp_path, "samples", "cfg1")
    with pytest.raises(RuntimeError, match="killed"):
        again.write_rows(_rows_then_crash(3))
    assert not again.is_complete() and not Artifact(tmp_path, "samples", "cfg1").is_complete()
    with pytest.raises(DataError, match="no complete artifact"):
        again.read_rows()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # a manifest lost after the data was written also means "redo"
    again.write_rows(ROWS)
    again.manifest_path.unlink()
    assert not again.is_complete()


def test_crash_inside_checkpoint_folder(tmp_path):
    stage = Artifact(tmp_path, "cream/iter1/checkpoint", "cfg")

    def half(folder):
        (folder / "model.safetensors").write_bytes(b"x" * 10)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        stage.write_folder(half)
    assert not stage.is_complete() and not stage.folder_path.exists()
    assert list((tmp_path / "cream/iter1").iterdir()) == []
    stage.write_folder(lambda f: (f / "model.safetensors").write_bytes(b"y"))
    assert stage.is_complete() and (stage.folder_path / "model.safetensors").read_bytes() == b"y"


def test_config_change_invalidates_stage_and_dependents(tmp_path):
    def chain(sample_cfg):
        samples = Artifact(tmp_path, "samples", sample_cfg)
        if not samples.is_complete():
            samples.write_rows(ROWS)
        rewards = Artifact(tmp_path, "rewards", "r1", {"samples": samples.digest})
        return samples, rewards

    samples, rewards = chain("s1")
    rewards.write_rows([{"x": 1}])
    first_digest = samples.digest
    assert chain("s1")[1].is_complete()  # restart with the same config: skipped
    assert not Artifact(tmp_path, "samples", "s2").is_complete()
    samples2, rewards2 = chain("s2")  # upstream redone with a new config
    assert samples2.digest != first_digest
    assert not samples.is_complete()  # the old config's artifact no longer counts
    assert not rewards2.is_complete()
    assert not Artifact(tmp_path, "rewards", "r2", {"samples": samples2.digest}).is_complete()


def test_prune_checkpoints(tmp_path):
    for t in (1, 2, 3):
        Artifact(tmp_path, f"cream/iter{t}/checkpoint", "c").write_folder(
            lambda f: (f / "w.bin").write_bytes(b"0" * 100)
        )
    Artifact(tmp_path, "cream/iter1/samples", "c").write_rows(ROWS)
    pruned = prune_checkpoints(tmp_path, keep={"cream/iter3/checkpoint"})
    assert pruned == ["cream/iter1/checkpoint", "cream/iter2/checkpoint"]
    one = Artifact(tmp_path, "cream/iter1/checkpoint", "c")
    assert one.is_complete() and not one.is_available() and not one.folder_path.exists()
    assert one.digest  # dependents keep a valid input digest
    assert Artifact(tmp_path, "cream/iter3/checkpoint", "c").is_available()
    assert Artifact(tmp_path, "cream/iter1/samples", "c").read_rows() == ROWS
    assert prune_checkpoints(tmp_path, keep=()) == ["cream/iter3/checkpoint"]


def test_append_jsonl_and_bad_names(tmp_path):
    import numpy as np

    append_jsonl(tmp_path / "t.jsonl", [{"v": np.float32(0.5)}])
    append_jsonl(tmp_path / "t.jsonl", [{"v": 2}])
    assert [json.loads(x)["v"] for x in (tmp_path / "t.jsonl").read_text().splitlines()] == [0.5, 2]
    with pytest.raises(ValueError):
        Artifact(tmp_path, "../escape", "c")
