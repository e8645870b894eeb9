"""Model cards with lineage and data set cards: YAML the Hub parses, values that match the run's
manifests, artifacts that ``datasets`` loads through the card's ``configs``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cream_plugin.cards import (
    Lineage,
    folder_digest,
    lineage_from_run,
    read_card_metadata,
    write_dataset_card,
    write_model_card,
    write_run_cards,
)
from cream_plugin.errors import DataError
from cream_plugin.loop.artifacts import Artifact


def manifest(run: Path, name: str) -> dict:
    return json.loads((run / f"{name}.manifest.json").read_text())


def test_model_card_records_the_lineage_of_a_run_checkpoint(tiny_run_dir) -> None:
    from huggingface_hub import ModelCard

    run = tiny_run_dir
    written = write_run_cards(run)
    card_path = run / "cream" / "M2" / "README.md"
    assert card_path in written and (run / "M1" / "README.md") in written
    meta = read_card_metadata(card_path)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["license"] == "apache-2.0"
    assert meta["library_name"] == "transformers"
    assert {"cream", "dpo", "trl"} <= set(meta["tags"])
    assert "allenai/ai2_arc" in meta["datasets"] and "openai/gsm8k" in meta["datasets"]
    lin = meta["cream"]
    assert lin["method"] == "cream" and lin["iteration"] == 1
    assert lin["digest"] == manifest(run, "cream/M2")["digest"]
    assert lin["parent"] == "M1"
    assert lin["parent_digest"] == manifest(run, "M1")["digest"]
    pairs = manifest(run, "cream/iter1/pairs")
    assert lin["pairs"]["path"] == "cream/iter1/pairs.jsonl"
    assert lin["pairs"]["digest"] == pairs["digest"]
    assert lin["pairs"]["rows"] == 4
    assert lin["pairs"]["bytes"] == (run / "cream/iter1/pairs.jsonl").stat().st_size
    assert lin["consistency"]["C"] == {"mean": 0.675, "std": 0.3, "n": 4}
    assert lin["training"]["beta"] == 0.1 and lin["training"]["consistency_mode"] == "dynamic"
    assert "report_to" not in lin["training"]
    assert lin["benchmarks"] == {"cream_arc_easy": {"acc": 0.5}}  # M2's row, not M1's
    assert lin["run_name"] == "study-run"
    body = card_path.read_text()
    assert pairs["digest"] in body and manifest(run, "M1")["digest"] in body
    assert "| C | 0.675 | 0.3 | 4 |" in body
    card = ModelCard.load(card_path)
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "cream" in card.data.tags


def test_sft_card_has_m0_as_parent_and_sft_settings(tiny_run_dir) -> None:
    lin = lineage_from_run(tiny_run_dir, "M1")
    assert lin.method == "sft" and lin.iteration is None
    assert lin.parent == "M0" and lin.parent_digest == "M0:abc123"
    assert lin.pairs is None
    assert lin.training["sft_epochs"] == 3.0 and "beta" not in lin.training
    assert lin.benchmarks == {"cream_arc_easy": {"acc": 0.25}}


def test_unknown_checkpoint_is_named(tiny_run_dir) -> None:
    expected = r"no checkpoint 'cream/M9'; checkpoints here: M1, cream/M2"
    with pytest.raises(DataError, match=expected):
        lineage_from_run(tiny_run_dir, "cream/M9")


def test_write_model_card_takes_results_as_dicts(tmp_path) -> None:
    from huggingface_hub import ModelCard

    folder = tmp_path / "ckpt"
    folder.mkdir()
    lineage = Lineage(
        method="dpo", checkpoint="ckpt", base_model="/local/model", parent="/local/model",
        training={"beta": 0.1}, benchmarks={"arc_easy": {"acc": 0.49, "acc_stderr": math.nan}},
        instruments={"label_accuracy": {"implicit": 0.61, "n": 120}},
    )
    path = write_model_card(folder, lineage)
    meta = read_card_metadata(path)
    assert "base_model" not in meta  # a local path is no Hub repository id
    assert meta["cream"]["benchmarks"]["arc_easy"] == {"acc": 0.49, "acc_stderr": None}
    assert meta["cream"]["instruments"]["label_accuracy"]["implicit"] == 0.61
    body = path.read_text()
    assert "| label_accuracy.implicit | 0.61 |" in body and "| arc_easy | acc | 0.49 |" in body
    assert ModelCard.load(path).data.tags[:3] == ["cream", "dpo", "trl"]
    with pytest.raises(DataError, match="no checkpoint folder"):
        write_model_card(tmp_path / "missing", lineage)


def test_dataset_card_loads_with_datasets(tiny_run_dir) -> None:
    import datasets
    from huggingface_hub import DatasetCard

    pairs_path = tiny_run_dir / "cream" / "iter1" / "pairs.jsonl"
    card = write_dataset_card(pairs_path)
    assert card == pairs_path.parent / "README.md"
    meta = read_card_metadata(card)
    # The folder also holds a consistency artifact: not a samples/pairs artifact, not listed.
    assert [c["config_name"] for c in meta["configs"]] == ["pairs"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "pairs.jsonl"}]
    assert "preference" in meta["tags"]
    rows = [json.loads(x) for x in pairs_path.read_text().splitlines()]
    plain = datasets.load_dataset("json", data_files=str(pairs_path), split="train")
    assert plain.num_rows == 4 and plain["chosen"] == [r["chosen"] for r in rows]
    assert plain["consistency"] == [r["consistency"] for r in rows]
    via_card = datasets.load_dataset(str(pairs_path.parent), "pairs", split="train")
    assert via_card["prompt_id"] == [r["prompt_id"] for r in rows]
    assert DatasetCard.load(card).data.configs[0]["config_name"] == "pairs"
    body = card.read_text()
    assert manifest(tiny_run_dir, "cream/iter1/pairs")["digest"] in body


def test_dataset_card_covers_every_artifact_of_the_folder(tiny_run_dir) -> None:
    import datasets

    folder = tiny_run_dir / "shared" / "iter1"
    Artifact(tiny_run_dir, "shared/iter1/pairs", "h", {}).write_rows(
        [{"prompt_id": "p0", "prompt": "q", "chosen": "a", "rejected": "b", "consistency": 1.0}],
        method="shared", iteration=1, step="pairs",
    )
    meta = read_card_metadata(write_dataset_card(folder / "samples.jsonl"))
    assert sorted(c["config_name"] for c in meta["configs"]) == ["pairs", "samples"]
    samples = datasets.load_dataset(str(folder), "samples", split="train")
    assert samples.num_rows == 4 and samples[0]["responses"][2] == "x"


def test_empty_artifact_is_listed_but_is_no_config(tiny_run_dir) -> None:
    card = write_dataset_card(tiny_run_dir / "oracle" / "iter1" / "pairs.jsonl")
    assert "configs" not in read_card_metadata(card)
    assert "| pairs | `pairs.jsonl` | pairs | oracle | 1 | 0 |" in card.read_text()
    with pytest.raises(DataError, match="no such artifact"):
        write_dataset_card(tiny_run_dir / "nope.jsonl")


def test_cli_train_writes_a_card_and_tensorboard_logs(tiny_model_dir, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from huggingface_hub import ModelCard

    from cream_plugin.cli import main
    from cream_plugin.testing import PAIR_BAD, PAIR_GOOD, PAIR_PROMPTS

    pairs = tmp_path / "pairs.jsonl"
    values = [0.2, 0.5, 0.9, 1.0]
    pairs.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": p}],
        "chosen": [{"role": "assistant", "content": g}],
        "rejected": [{"role": "assistant", "content": b}],
        "consistency": c,
    }) + "\n" for p, g, b, c in zip(PAIR_PROMPTS, PAIR_GOOD, PAIR_BAD, values, strict=True)))
    out = tmp_path / "out"
    code = main(["train", str(pairs), "--model", str(tiny_model_dir), "--output", str(out),
                 "--report-to", "tensorboard",
                 "--set", "use_cpu=true", "--set", "max_steps=1", "--set", "max_length=64",
                 "--set", "per_device_train_batch_size=2", "--set", "logging_steps=1"])
    assert code == 0
    assert list((out / "tb" / "train").glob("events.out.tfevents.*"))
    lin = read_card_metadata(out)["cream"]
    assert lin["method"] == "cream" and lin["parent"] == str(tiny_model_dir)
    assert lin["parent_digest"] == folder_digest(tiny_model_dir)
    assert lin["pairs"]["rows"] == 4 and lin["pairs"]["bytes"] == pairs.stat().st_size
    assert lin["consistency"]["C"]["mean"] == pytest.approx(sum(values) / 4)
    assert lin["training"]["max_steps"] == 1 and lin["training"]["beta"] == 0.1
    assert ModelCard.load(out / "README.md").data.library_name == "transformers"


DOC = Path(__file__).resolve().parents[1] / "docs" / "integration.md"


def doc_blocks(name: str) -> str:
    """The python blocks of docs/integration.md marked ``<!-- test: name -->``, joined."""
    import re

    pattern = rf"<!-- test: {re.escape(name)} -->\n```python\n(.*?)```"
    blocks = re.findall(pattern, DOC.read_text(), re.DOTALL)
    assert blocks, f"no block marked {name} in {DOC}"
    return "\n".join(blocks)


def test_doc_trl_script_runs(tiny_model, tiny_tokenizer, tmp_path, monkeypatch) -> None:
    pytest.importorskip("tensorboard")
    monkeypatch.chdir(tmp_path)
    scope = {"model": tiny_model, "tokenizer": tiny_tokenizer}
    exec(compile(doc_blocks("trl-script"), str(DOC), "exec"), scope)
    assert list((tmp_path / "out" / "tb" / "cream" / "M2").glob("events.out.tfevents.*"))
    meta = read_card_metadata(tmp_path / "out" / "M2")
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["cream"]["parent"] == "M1"
    assert meta["cream"]["benchmarks"]["arc_easy"]["acc"] == 0.49
    assert scope["trainer"].args.report_to == ["tensorboard"]


def test_doc_reading_snippets_run(tiny_run_dir, capsys) -> None:
    # the fixture's run has one iteration (final model cream/M2); the demo's has two (cream/M3):
    # tests/test_doc_blocks.py runs the blocks as written after such a run
    code = doc_blocks("read-artifacts").replace('"runs/demo"', repr(str(tiny_run_dir)))
    code = code.replace('"cream/M3"', '"cream/M2"')
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)
    assert scope["lineage"]["parent"] == "M1"
    assert scope["low_c"].num_rows == 1  # C = 0.2, 0.6, 0.9, 1.0
    assert scope["samples"].num_rows == 4
    assert scope["table"].loc[("cream", 2), "cream_arc_easy"] == 0.5
    assert manifest(tiny_run_dir, "cream/M2")["inputs"]["base"] in capsys.readouterr().out
