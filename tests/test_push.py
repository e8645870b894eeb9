"""`cream push`: the dry run lists every file with its size and destination; the Hub calls are
recorded (no network); the pushed layout loads with transformers and datasets; bad input fails
with one line naming the folder or checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from cream_plugin.cli import main
from cream_plugin.commands.push import PushError, execute_push, plan_push
from cream_plugin.loop.artifacts import prune_checkpoints


class RecordingApi:
    """Stands in for HfApi: records create_repo / create_commit calls, sends nothing."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail = fail

    def create_repo(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("create_repo", args, kwargs))
        if self.fail:
            raise self.fail

    def create_commit(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("create_commit", args, kwargs))
        return type("Info", (), {"commit_url": f"https://hub.invalid/{args[0]}/commit/1"})()


@pytest.fixture
def hub(monkeypatch) -> RecordingApi:
    import huggingface_hub

    api = RecordingApi()
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", api.create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", api.create_commit)
    return api


def materialise(plan: list[Any], repo_type: str, into: Path) -> Path:
    """Lay out one repository's files as the Hub would hold them."""
    for u in plan:
        if u.repo_type != repo_type:
            continue
        dest = into / u.path_in_repo
        dest.parent.mkdir(parents=True, exist_ok=True)
        if u.content is not None:
            dest.write_bytes(u.content)
        else:
            shutil.copyfile(u.source, dest)
    return into


def test_dry_run_lists_every_file_and_sends_nothing(tiny_run_dir, hub, capsys) -> None:
    code = main(["push", str(tiny_run_dir), "--repo-id", "org/study", "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    assert hub.calls == []
    assert "dry run: nothing was uploaded" in out
    lines = out.splitlines()
    weights = tiny_run_dir / "cream" / "M2" / "model.safetensors"
    line = next(x for x in lines if "model:org/study/cream/M2/model.safetensors" in x)
    assert line.endswith(f"<- {weights}")
    size_kb = weights.stat().st_size / 1024
    assert line.split()[0] == f"{size_kb:.1f}"
    for dest in ("model:org/study/README.md", "model:org/study/cream/M2/README.md",
                 "model:org/study/M1/config.json", "model:org/study/report.md",
                 "model:org/study/cream/M2.train_log.json",
                 "dataset:org/study-data/README.md",
                 "dataset:org/study-data/cream/iter1/pairs.jsonl"):
        assert any(f" {dest}  <- " in x for x in lines), dest
    assert not any("samples.jsonl" in x for x in lines)  # not in the default --what
    assert "to 2 repositories: dataset:org/study-data, model:org/study" in lines[-2]
    # Cards are generated for the push, never written into the run folder.
    assert not (tiny_run_dir / "cream" / "M2" / "README.md").exists()


def test_push_sends_one_commit_per_repository(tiny_run_dir, hub, capsys) -> None:
    code = main(["push", str(tiny_run_dir), "--repo-id", "org/study", "--private",
                 "--what", "checkpoints,pairs,samples", "--checkpoints", "cream/M2",
                 "--dataset-repo-id", "org/study-pairs"])
    assert code == 0
    repos = [(c[1][0], c[2]) for c in hub.calls if c[0] == "create_repo"]
    assert repos == [("org/study", {"repo_type": "model", "private": True, "exist_ok": True}),
                     ("org/study-pairs", {"repo_type": "dataset", "private": True,
                                          "exist_ok": True})]
    commits = {c[1][0]: c[2] for c in hub.calls if c[0] == "create_commit"}
    model_paths = {op.path_in_repo for op in commits["org/study"]["operations"]}
    assert "cream/M2/model.safetensors" in model_paths and "README.md" in model_paths
    assert not any(p.startswith("M1/") for p in model_paths)  # only the chosen checkpoint
    assert "report.md" not in model_paths
    data_ops = {op.path_in_repo: op for op in commits["org/study-pairs"]["operations"]}
    assert set(data_ops) == {"README.md", "cream/iter1/pairs.jsonl", "oracle/iter1/pairs.jsonl",
                             "shared/iter1/samples.jsonl"}
    card = data_ops["README.md"].path_or_fileobj.decode()
    meta = yaml.safe_load(card.split("---")[1])
    names = [c["config_name"] for c in meta["configs"]]
    assert names == ["cream-iter1-pairs", "shared-iter1-samples"]  # the empty one is no config
    assert commits["org/study"]["commit_message"] == "cream push: study-run"
    assert capsys.readouterr().out.splitlines() == [
        "https://hub.invalid/org/study/commit/1", "https://hub.invalid/org/study-pairs/commit/1"
    ]


def test_pushed_layout_loads_with_transformers_and_datasets(tiny_run_dir, tmp_path) -> None:
    import datasets
    from transformers import AutoModelForCausalLM

    from cream_plugin.cards import read_card_metadata, write_run_cards

    write_run_cards(tiny_run_dir)  # cards already on disk are replaced, not sent twice
    plan = plan_push(tiny_run_dir, "org/study", ["checkpoints", "pairs", "samples"])
    dests = [(u.repo_type, u.path_in_repo) for u in plan]
    assert len(dests) == len(set(dests))
    card = next(u for u in plan if u.path_in_repo == "cream/M2/README.md")
    assert card.content is not None and card.source is None
    model_repo = materialise(plan, "model", tmp_path / "model-repo")
    data_repo = materialise(plan, "dataset", tmp_path / "data-repo")
    model = AutoModelForCausalLM.from_pretrained(model_repo, subfolder="cream/M2")
    assert model.config.num_hidden_layers == 2
    assert read_card_metadata(model_repo / "cream" / "M2")["cream"]["parent"] == "M1"
    root = read_card_metadata(model_repo)
    assert root["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "org/study-data" in root["datasets"]
    pairs = datasets.load_dataset(str(data_repo), "cream-iter1-pairs", split="train")
    assert pairs.num_rows == 4 and set(pairs.column_names) >= {"prompt", "chosen", "rejected"}
    samples = datasets.load_dataset(str(data_repo), "shared-iter1-samples", split="train")
    assert samples.num_rows == 4


def test_hub_failure_is_one_line(tiny_run_dir, monkeypatch) -> None:
    plan = plan_push(tiny_run_dir, "org/study", ["checkpoints"])
    api = RecordingApi(fail=OSError("Offline mode is enabled.\nmore detail"))
    with pytest.raises(PushError, match=r"^push to model repository org/study failed: "
                                        r"Offline mode is enabled\.$"):
        execute_push(plan, api=api)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoints", "cream/M9"], "no checkpoint 'cream/M9'; checkpoints here: M1, cream/M2"),
        (["--what", "weights"], "--what 'weights': expected a comma-separated subset"),
        (["--repo-id", "no repo"], "--repo-id 'no repo': not a Hub repository id"),
        (["--repo-id", "justname"], "--repo-id 'justname': expected ORG/NAME"),
    ],
)
def test_bad_arguments_name_what_is_wrong(tiny_run_dir, hub, capsys, argv, message) -> None:
    args = ["push", str(tiny_run_dir), "--repo-id", "org/study", "--dry-run", *argv]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert hub.calls == []


def test_not_a_run_folder(tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["push", str(tmp_path), "--repo-id", "org/x", "--dry-run"]) == 1
    assert f"{tmp_path}: not a cream run folder" in capsys.readouterr().err
    assert main(["push", str(tmp_path / "nope"), "--repo-id", "org/x", "--dry-run"]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_pruned_and_missing_checkpoints(tiny_run_dir, capsys) -> None:
    prune_checkpoints(tiny_run_dir, keep={"M1"})
    args = ["push", str(tiny_run_dir), "--repo-id", "org/x", "--dry-run"]
    assert main([*args, "--checkpoints", "cream/M2"]) == 1
    assert "checkpoint 'cream/M2' was pruned" in capsys.readouterr().err
    assert main(args) == 0  # the default pushes the checkpoints still on disk
    out = capsys.readouterr().out
    assert "model:org/x/M1/model.safetensors" in out and "cream/M2/" not in out
    shutil.rmtree(tiny_run_dir / "M1")  # complete, not pruned, but its folder is gone
    assert main([*args, "--checkpoints", "M1"]) == 1
    assert "checkpoint folder is missing" in capsys.readouterr().err
    assert main([*args, "--what", "checkpoints"]) == 1
    assert "no checkpoint on disk" in capsys.readouterr().err
