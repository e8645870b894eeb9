"""The run folder belongs to cream: user files are never deleted, a foreign folder is refused,
bad settings fail before the disk is touched, and a second run on one folder refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cream_plugin.config import load_config
from cream_plugin.errors import ConfigError, CreamError
from cream_plugin.loop.artifacts import Artifact
from cream_plugin.loop.pipeline import Pipeline, last_checkpoints
from cream_plugin.loop.run_folder import LOCK, RunFolder, RunFolderError


def user_files(folder):
    """What a user keeps in a project folder: hidden folders, hidden temp files, sources."""
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".venv" / "bin").mkdir(parents=True)
    (folder / ".notes.tmp").write_text("mine")
    (folder / "src").mkdir()
    (folder / "src" / "a.py").write_text("x = 1\n")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_foreign_folder_is_refused_and_left_as_it_was(tmp_path) -> None:
    before = user_files(tmp_path)
    with pytest.raises(RunFolderError, match=r"not empty and not a cream run folder.*--adopt-dir"):
        RunFolder(tmp_path).claim()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_adopted_folder_keeps_user_files_through_cleanup_and_fresh(tmp_path) -> None:
    before = user_files(tmp_path)
    folder = RunFolder(tmp_path)
    folder.claim(adopt=True)
    Artifact(tmp_path, "prompts", "c").write_rows([{"a": 1}])
    Artifact(tmp_path, "M1", "c").write_folder(lambda f: (f / "w.bin").write_bytes(b"0"))
    (tmp_path / "report.md").write_text("# report")
    # A killed run's temp file (journaled) next to a user's hidden temp file.
    leftover = Artifact(tmp_path, "shared/iter1/samples", "c").journal.temp_path(
        tmp_path / "shared/iter1/samples.jsonl"
    )
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_text("half")
    assert folder.clean_leftovers() == [str(leftover.relative_to(tmp_path))]
    removed = folder.wipe()
    assert "prompts.jsonl" in removed and "M1/w.bin" in removed and "report.md" in removed
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert after == sorted([*before, "cream-run.json"])


def test_empty_output_dir_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(overrides=["output_dir=", "model.name=tiny-random"])
    with pytest.raises(ConfigError, match="output_dir: empty"):
        Pipeline(config)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.prompt_sources=[nosuch]", "unknown source 'nosuch'"),
        ("methods=[nosuch]", "unknown method 'nosuch'"),
        ("sampling.backend=nosuch", "unknown sampler 'nosuch'"),
    ],
)
def test_bad_settings_fail_before_the_folder_is_touched(tmp_path, override, message) -> None:
    user_files(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    config = load_config(overrides=[override, f"output_dir={tmp_path}"])
    with pytest.raises(CreamError, match=message):
        Pipeline(config)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_data_folder_without_a_test_split_fails_before_sft(tmp_path, data_dir) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    (data / "openbookqa" / "test.jsonl").unlink()
    config = load_config(overrides=[f"data.data_dir={data}", f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(CreamError, match=r"lacks .*openbookqa/test\.jsonl"):
        Pipeline(config)
    assert not (tmp_path / "run").exists()


def test_second_run_on_one_folder_refuses(tmp_path) -> None:
    first = RunFolder(tmp_path)
    first.claim()
    first.acquire()
    holder = json.loads((tmp_path / LOCK).read_text())
    assert holder["pid"] == os.getpid()
    with pytest.raises(RunFolderError, match=rf"in use by another cream run \(pid {os.getpid()}"):
        RunFolder(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK).exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    import socket

    (tmp_path / LOCK).write_text(json.dumps(
        {"pid": int(dead.stdout), "host": socket.gethostname(), "started": "then"}))
    folder = RunFolder(tmp_path)
    folder.acquire()
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


def test_lock_of_another_host_is_never_stolen(tmp_path) -> None:
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "t"}))
    with pytest.raises(RunFolderError, match="on elsewhere"):
        RunFolder(tmp_path).acquire()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_folder_names_the_path(tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(RunFolderError, match="not writable"):
            RunFolder(ro / "run").claim()
    finally:
        ro.chmod(0o700)


def test_pruning_keeps_every_methods_latest_checkpoint(tmp_path) -> None:
    for name in ("M1", "srlm/M2", "srlm/M3", "cream/M2", "cream/M3"):
        Artifact(tmp_path, name, "c").write_folder(lambda f: (f / "w").write_bytes(b"0"))
    assert last_checkpoints(tmp_path) == {"M1", "srlm/M3", "cream/M3"}


def test_cream_clean_forgets_a_stage_and_removes_leftovers(tmp_path, capsys) -> None:
    from cream_plugin.cli import main

    folder = RunFolder(tmp_path)
    folder.claim()
    stage = Artifact(tmp_path, "cream/iter1/pairs", "c")
    stage.write_rows([{"a": 1}])
    leftover = stage.journal.temp_path(tmp_path / "M1")
    leftover.mkdir()
    assert main(["clean", str(tmp_path), "--stage", "cream/iter1/pairs"]) == 0
    assert not stage.manifest_path.exists() and not stage.rows_path.exists()
    assert not leftover.exists()
    assert main(["clean", str(tmp_path), "--stage", "nosuch"]) == 1
    assert "no stage 'nosuch'" in capsys.readouterr().err
