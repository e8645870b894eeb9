"""Prompt pool: natural chat questions with gold references, disjoint per iteration, seeded."""

from __future__ import annotations

import json

import pytest

from cream_plugin.errors import DataError
from cream_plugin.loop.prompt_pool import (
    MC_INSTRUCTION,
    build_prompt_pool,
    gsm8k_reference,
    load_source,
)

SOURCES = ["seed_sft", "arc_easy", "arc_challenge", "openbookqa", "gsm8k"]


def test_pool_is_disjoint_mixed_and_seeded(data_dir):
    pool = build_prompt_pool(SOURCES, data_dir, per_iteration=20, iterations=3, seed=1)
    assert [len(chunk) for chunk in pool] == [20, 20, 20]
    ids = [item["prompt_id"] for chunk in pool for item in chunk]
    assert len(set(ids)) == len(ids)
    for chunk in pool:  # round-robin mixing: every source in every iteration
        assert {item["source"] for item in chunk} == set(SOURCES)
    assert build_prompt_pool(SOURCES, data_dir, 20, 3, seed=1) == pool
    other = build_prompt_pool(SOURCES, data_dir, 20, 3, seed=2)
    assert [i["prompt_id"] for i in other[0]] != [i["prompt_id"] for i in pool[0]]
    item = pool[0][0]
    assert set(item) == {"prompt_id", "prompt", "source", "reference"}
    assert item["prompt"][0]["role"] == "user" and len(item["prompt"]) == 1
    json.dumps(pool)  # plain JSON, ready for an artifact


def test_rendering_and_references(data_dir):
    arc = load_source("arc_easy", data_dir)[0]
    assert arc["prompt_id"] == "arc_easy/arc_easy-train-0"
    text = arc["prompt"][0]["content"]
    assert text.startswith("Which factor will most likely cause a person to develop a fever?")
    assert "\nA. a leg muscle relaxing after exercise\n" in text
    assert text.endswith(MC_INSTRUCTION)
    assert arc["reference"] in {"A", "B", "C", "D", "E"}
    obqa = load_source("openbookqa", data_dir)[0]
    assert obqa["prompt"][0]["content"].startswith("The sun is responsible for")
    assert obqa["reference"] == "D"
    gsm = load_source("gsm8k", data_dir)[0]
    assert gsm["prompt_id"] == "gsm8k/0" and gsm["reference"] == "72"
    assert gsm["prompt"][0]["content"].startswith("Natalia sold clips")
    seed = load_source("seed_sft", data_dir)[0]
    assert seed["reference"] is None and seed["prompt_id"] == "seed_sft/seed_task_0-0"
    assert seed["prompt"][0]["content"].startswith("Is there anything I can eat")


def test_gsm8k_reference():
    assert gsm8k_reference("so 1,234 in all\n#### 1,234") == "1234"
    with pytest.raises(ValueError):
        gsm8k_reference("no final line")


def test_errors_are_clear(data_dir, tmp_path):
    with pytest.raises(DataError, match="fewer than the 1000 asked"):
        build_prompt_pool(["seed_sft"], data_dir, per_iteration=500, iterations=2, seed=0)
    with pytest.raises(DataError, match="unknown prompt source 'nope'"):
        build_prompt_pool(["nope"], data_dir, 1, 1, 0)
    bad = tmp_path / "gsm8k"
    bad.mkdir()
    (bad / "train.jsonl").write_text('{"question": "q", "answer": "no number"}\n')
    with pytest.raises(DataError, match="gsm8k/train row 1"):
        load_source("gsm8k", tmp_path)
