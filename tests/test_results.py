"""The results table: append, replace by key, read back, and reject bad rows with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cream_plugin.errors import DataError
from cream_plugin.report.results import RESULTS_FILE, append_results, read_results


def _row(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {"method": "cream", "iteration": 1, "task": "cream_arc_easy",
                              "metric": "acc", "value": 0.5, "stderr": 0.05, "limit": 100,
                              "seconds": 24.0}
    row.update(kw)
    return row


def test_append_and_read_back(tmp_path: Path) -> None:
    assert read_results(tmp_path) == []
    append_results(tmp_path, [_row(), _row(metric="acc_norm", stderr=None)])
    append_results(tmp_path, [_row(iteration=2, value=0.6)])
    rows = read_results(tmp_path)
    assert [(r["iteration"], r["metric"], r["value"]) for r in rows] == [
        (1, "acc", 0.5), (1, "acc_norm", 0.5), (2, "acc", 0.6)]
    assert rows[1]["stderr"] is None


def test_same_key_replaces_row(tmp_path: Path) -> None:
    append_results(tmp_path, [_row(value=0.1)])
    append_results(tmp_path, [_row(value=0.9), _row(method="srlm", value=0.3)])
    rows = read_results(tmp_path)
    assert [(r["method"], r["value"]) for r in rows] == [("cream", 0.9), ("srlm", 0.3)]
    assert [p.name for p in tmp_path.iterdir()] == [RESULTS_FILE]  # no temp file left


def test_nan_stderr_becomes_null(tmp_path: Path) -> None:
    append_results(tmp_path, [_row(stderr=float("nan"))])
    assert read_results(tmp_path)[0]["stderr"] is None


@pytest.mark.parametrize(("bad", "message"), [
    ({"iteration": "1"}, "iteration"),
    ({"value": None}, "value"),
    ({"iteration": True}, "iteration"),
])
def test_bad_rows_are_rejected(tmp_path: Path, bad: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        append_results(tmp_path, [_row(**bad)])
    assert not (tmp_path / RESULTS_FILE).exists()


def test_missing_field_rejected(tmp_path: Path) -> None:
    row = _row()
    del row["seconds"]
    with pytest.raises(DataError, match="missing field"):
        append_results(tmp_path, [row])


def test_corrupt_table_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_text(json.dumps(_row()) + "\n" + json.dumps({"method": "x"}) + "\n")
    with pytest.raises(DataError, match=rf"{path}:2: missing field"):
        read_results(tmp_path)


def test_rows_of_other_evaluation_settings_are_kept_apart(tmp_path: Path) -> None:
    """A re-evaluation with another limit adds rows beside the old ones, never replaces them,
    and a report shows only the current settings' rows."""
    from cream_plugin.report.results import rows_for_settings

    append_results(tmp_path, [_row(limit=100, eval_settings="a", value=0.5)])
    append_results(tmp_path, [_row(limit=1, eval_settings="b", value=1.0)])
    rows = read_results(tmp_path)
    assert sorted((r["limit"], r["value"]) for r in rows) == [(1, 1.0), (100, 0.5)]
    shown, hidden = rows_for_settings(rows, "b")
    assert [(r["limit"], r["value"]) for r in shown] == [(1, 1.0)] and hidden == 1
