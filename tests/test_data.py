"""Data location and row validation."""

from __future__ import annotations

import json

import pytest

from cream_plugin.data import load_rows, read_jsonl, resolve_data_dir
from cream_plugin.errors import DataError


def test_env_var_names_the_data_folder(data_dir, monkeypatch):
    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    assert resolve_data_dir() == data_dir.resolve()
    rows = load_rows("arc_easy", "test")
    assert len(rows) == 2376 and {"question", "choices", "answerKey"} <= set(rows[0])


def test_config_wins_over_env(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CREAM_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(data_dir) == data_dir.resolve()


def test_missing_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CREAM_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataError, match=r"CREAM_DATA_DIR points to .*absent"):
        resolve_data_dir()


def test_seed_set_loads_with_chat_messages(data_dir):
    rows = load_rows("seed_sft", "train", data_dir)
    assert len(rows) == 427
    assert rows[0]["messages"][-1]["role"] == "assistant"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (
            json.dumps({"question": "q", "choices": {"text": ["a"], "label": ["A"]}}),
            "missing field(s) answerKey",
        ),
        (
            json.dumps(
                {"question": "q", "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "C"}
            ),
            "answerKey 'C' is not one of the labels",
        ),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, line, problem):
    folder = tmp_path / "arc_easy"
    folder.mkdir()
    good = {
        "id": "x",
        "question": "q",
        "choices": {"text": ["a", "b"], "label": ["A", "B"]},
        "answerKey": "B",
    }
    (folder / "test.jsonl").write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(DataError) as info:
        load_rows("arc_easy", "test", tmp_path)
    assert f"{folder / 'test.jsonl'}:2: " in str(info.value)
    assert problem in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "none.jsonl")


def test_offline_hub_error_names_cream_data_dir(monkeypatch):
    """Without a local folder, offline, the Hub error says how to fix it (CREAM_DATA_DIR)."""
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'allenai/ai2_arc' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.delenv("CREAM_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"allenai/ai2_arc/ARC-Easy: not reachable on the Hub "
                       r"\(Couldn't reach .*\); set CREAM_DATA_DIR to the local data folder"):
        load_rows("arc_easy", "test")


def test_cream_eval_offline_without_data_folder_is_one_line_naming_the_fix(
    monkeypatch, capsys, tiny_model_dir
):
    import datasets

    from cream_plugin.cli import main

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'allenai/ai2_arc' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.delenv("CREAM_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    code = main(["eval", "--model", str(tiny_model_dir), "--tasks", "cream_arc_easy",
                 "--limit", "1", "--device", "cpu"])
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert code == 1 and line.startswith("cream eval: error: allenai/ai2_arc/ARC-Easy: not")
    assert "set CREAM_DATA_DIR" in line
