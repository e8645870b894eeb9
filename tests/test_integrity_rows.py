"""Issue 12 (property-based): random JSON rows given to the file readers of ``cream sample``,
``reward``, ``pairs`` and ``train`` end in success or a one-line CreamError, never in an
unexpected exception."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cream_plugin.cli import main
from cream_plugin.data import read_jsonl
from cream_plugin.errors import CreamError
from cream_plugin.ranking.pairs import validate_pair_rows

FIELDS = ["prompt_id", "prompt", "responses", "rewards", "logps", "num_tokens", "reference",
          "chosen", "rejected", "consistency", "ref_chosen_logps", "ref_rejected_logps", "role",
          "content"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(),
    st.text(max_size=6), st.sampled_from(["user", "assistant", "p0", "p1", "<|im_end|>"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)), max_leaves=10)
MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                           "content": st.text(max_size=5)}), max_size=2)
PLAUSIBLE = st.fixed_dictionaries(
    {"prompt_id": st.sampled_from(["p0", "p1", 3, None]),
     "prompt": st.one_of(st.text(max_size=5), MESSAGES, JSON),
     "responses": st.one_of(st.lists(st.text(max_size=3), min_size=2, max_size=3), JSON)},
    optional={"rewards": st.lists(st.one_of(st.floats(), st.none(), st.text(max_size=2),
                                            st.integers(-5, 5)), max_size=3),
              "logps": st.lists(st.floats(), max_size=3),
              "chosen": st.one_of(st.text(max_size=3), MESSAGES, JSON),
              "rejected": st.one_of(st.text(max_size=3), MESSAGES, JSON),
              "consistency": st.one_of(st.floats(), JSON),
              "ref_chosen_logps": st.one_of(st.floats(), st.none(), JSON),
              "ref_rejected_logps": st.one_of(st.floats(), st.none())})
NUMBERISH = st.one_of(st.floats(), st.none(), st.integers(-5, 5), st.text(max_size=2),
                     st.booleans())
NEAR_VALID = st.lists(st.fixed_dictionaries(
    {"prompt": st.one_of(st.text(max_size=5), MESSAGES),
     "responses": st.lists(st.text(max_size=3), min_size=2, max_size=2),
     "rewards": st.lists(NUMBERISH, min_size=1, max_size=3),
     "chosen": st.one_of(st.text(max_size=3), MESSAGES),
     "rejected": st.one_of(st.text(max_size=3), MESSAGES)},
    optional={"logps": st.lists(NUMBERISH, min_size=2, max_size=2),
              "num_tokens": st.lists(NUMBERISH, min_size=2, max_size=2),
              "reference": st.one_of(st.text(max_size=8), st.sampled_from(
                  ["number:5", "choice:A", "choice:", "number:x"])),
              "consistency": NUMBERISH, "ref_chosen_logps": NUMBERISH,
              "ref_rejected_logps": NUMBERISH}), min_size=1, max_size=3).map(
    lambda rows: [dict(r, prompt_id=f"p{i}") for i, r in enumerate(rows)])
"""Rows that pass the first checks (unique ids, one N) so the later ones are reached too."""
ROWS = st.one_of(NEAR_VALID, st.lists(st.one_of(PLAUSIBLE, JSON), max_size=4))
RAW_LINES = st.lists(st.one_of(st.binary(max_size=12), st.just(b"[" * 3000),
                               st.just(b"1" * 5000)), max_size=2)
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def write(path: Path, rows: list[Any], raw: list[bytes]) -> Path:
    lines = [json.dumps(r).encode() for r in rows] + raw
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def expect_clean(capsys: Any, argv: list[str]) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 1)
    if code == 1:
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"cream {argv[0]}: error: ")
        assert "--debug for the traceback" not in last, last  # an unexpected exception


@pytest.fixture(scope="module")
def folder(tmp_path_factory: Any) -> Path:
    return tmp_path_factory.mktemp("rows")


@PROPERTY
@given(rows=ROWS, raw=RAW_LINES)
def test_property_read_jsonl(folder: Path, rows: list[Any], raw: list[bytes]) -> None:
    path = write(folder / "any.jsonl", rows, raw)
    try:
        read = read_jsonl(path)
    except CreamError:
        return
    assert all(isinstance(r, dict) for r in read)


@PROPERTY
@given(rows=ROWS, previous=st.one_of(st.none(), ROWS), mode=st.sampled_from(["dynamic", "none"]))
def test_property_cream_pairs(folder: Path, capsys: Any, rows: list[Any],
                              previous: list[Any] | None, mode: str) -> None:
    argv = ["pairs", str(write(folder / "r.jsonl", rows, [])), "-o", str(folder / "o.jsonl"),
            "--mode", mode]
    if previous is not None:
        argv += ["--previous", str(write(folder / "prev.jsonl", previous, []))]
    expect_clean(capsys, argv)
    if (folder / "o.jsonl").exists():  # what was written is finite where it must be
        for pair in read_jsonl(folder / "o.jsonl"):
            for key in ("chosen_reward", "rejected_reward", "consistency"):
                assert math.isfinite(pair[key])
        (folder / "o.jsonl").unlink()


@PROPERTY
@given(rows=ROWS)
def test_property_cream_train_pairs_file(folder: Path, capsys: Any, rows: list[Any]) -> None:
    # A missing model is the expected end when the rows pass: the rows are checked first.
    expect_clean(capsys, ["train", str(write(folder / "pairs.jsonl", rows, [])), "--model",
                          str(folder / "no-such-model"), "--output", str(folder / "out")])


@PROPERTY
@given(rows=ROWS)
def test_property_validate_pair_rows(rows: list[Any]) -> None:
    try:
        validate_pair_rows(rows, "pairs.jsonl")
    except CreamError:
        return
    for row in rows:  # what passes is what the trainers can take
        for column in ("ref_chosen_logps", "ref_rejected_logps"):
            if column in row:
                assert math.isfinite(row[column])


@PROPERTY
@given(rows=ROWS)
def test_property_cream_reward_answer_key(folder: Path, capsys: Any, rows: list[Any]) -> None:
    expect_clean(capsys, ["reward", str(write(folder / "s.jsonl", rows, [])), "-o",
                          str(folder / "rw.jsonl"), "--rewarder", "answer-key"])


@PROPERTY
@given(rows=ROWS, raw=RAW_LINES)
def test_property_cream_sample_prompts(folder: Path, capsys: Any, rows: list[Any],
                                       raw: list[bytes]) -> None:
    expect_clean(capsys, ["sample", "--model", str(folder / "no-such-model"), "--prompts",
                          str(write(folder / "p.jsonl", rows, raw)), "--out",
                          str(folder / "s.jsonl")])
