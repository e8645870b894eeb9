"""A stage's identity includes the content of what it read: a changed data file (another
CREAM_DATA_DIR, or an edited seed set) invalidates the stages that read it, and only those."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cream_plugin.config import load_config
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.distributed import DistContext
from cream_plugin.loop.stages.evaluate import EvaluateStage
from cream_plugin.loop.stages.prompts import PromptsStage
from cream_plugin.loop.stages.sft import SFTStage


class Ctx(RunContext):
    def model_digest(self, key: str) -> str:
        return f"fixed:{key}"


def identities(data: Path, tmp_path: Path, monkeypatch) -> dict[str, dict[str, str]]:
    monkeypatch.setenv("CREAM_DATA_DIR", str(data))
    ctx = Ctx(load_config(), tmp_path, DistContext())
    return {
        "prompts": PromptsStage().inputs(ctx),
        "M1": SFTStage().inputs(ctx),
        "eval": {k: v for k, v in EvaluateStage("sft", 1, "M1").inputs(ctx).items()
                 if k != "tasks"},
    }


def test_changed_data_files_change_the_identity_of_their_readers(tmp_path, data_dir,
                                                                  monkeypatch) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    original = identities(data_dir, tmp_path, monkeypatch)
    # The same content in another folder is the same input (content, not path, matters).
    assert identities(copy, tmp_path, monkeypatch) == original

    seed = copy / "seed_sft" / "train.jsonl"
    rows = [json.loads(x) for x in seed.read_text().splitlines()]
    seed.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    edited = identities(copy, tmp_path, monkeypatch)
    assert edited["M1"] != original["M1"]  # SFT read the seed set
    assert edited["eval"] == original["eval"]  # evaluation did not

    test = copy / "arc_easy" / "test.jsonl"
    test.write_text(test.read_text().replace("a", "b", 1))
    assert identities(copy, tmp_path, monkeypatch)["eval"] != original["eval"]

    train = copy / "openbookqa" / "train.jsonl"
    train.write_text(train.read_text().replace("a", "b", 1))
    assert identities(copy, tmp_path, monkeypatch)["prompts"] != original["prompts"]
