"""The stage runner, in-process with a fake context: skip, verify, recompute, refuse bad
output, and train a pruned checkpoint again when a later stage needs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cream_plugin.config import RunConfig
from cream_plugin.errors import DataError
from cream_plugin.loop.artifacts import Artifact, prune_checkpoints
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.distributed import DistContext
from cream_plugin.loop.runner import Runner
from cream_plugin.loop.stage import Output, Parallel, StageSpec


class FakeContext(RunContext):
    """A run context whose models are labels and whose digests are fixed strings."""

    def __init__(self, run_dir: Path, config: RunConfig | None = None) -> None:
        super().__init__(config or RunConfig(), run_dir, DistContext())

    def model_digest(self, key: str) -> str:
        if key == "M0":
            return "base"
        return super().model_digest(key)


class Numbers(StageSpec):
    """A rows stage whose output is a function of one setting; counts its computations."""

    step = "numbers"
    settings = ("seed",)

    def __init__(self, name: str = "numbers", rows: list[dict[str, Any]] | None = None) -> None:
        super().__init__(name)
        self.calls = 0
        self.rows = rows

    def compute(self, ctx: RunContext) -> Output:
        self.calls += 1
        rows = self.rows if self.rows is not None else [
            {"i": i, "v": i * ctx.config.seed} for i in range(4)
        ]
        return Output(rows=rows)


class Checkpoint(StageSpec):
    """A folder stage trained from another checkpoint (a stand-in for a training stage)."""

    step = "train"
    kind = "folder"
    parallel = Parallel.DDP

    def __init__(self, name: str, base: str) -> None:
        super().__init__(name)
        self.base = base
        self.calls = 0

    def models(self) -> tuple[str, ...]:
        return (self.base,)

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        return {"base": ctx.model_digest(self.base)}

    def compute(self, ctx: RunContext) -> Output:
        self.calls += 1
        ctx.model_path(self.base)  # what loading the base does: it must be on disk
        payload = f"{self.name} from {self.base}".encode()
        return Output(save=lambda folder: (folder / "model.safetensors").write_bytes(payload))


def test_complete_stage_is_reused_and_a_changed_setting_recomputes(tmp_path) -> None:
    ctx = FakeContext(tmp_path)
    first = Numbers()
    Runner(ctx).run(first)
    again = Numbers()
    runner = Runner(ctx)
    stage = runner.run(again)
    assert first.calls == 1 and again.calls == 0 and runner.reused == ["numbers"]
    assert stage.read_rows()[3] == {"i": 3, "v": 3 * 42}
    other = Numbers()
    Runner(FakeContext(tmp_path, RunConfig(seed=5))).run(other)
    assert other.calls == 1


def test_hand_edited_artifact_is_an_error_naming_the_file(tmp_path) -> None:
    ctx = FakeContext(tmp_path)
    stage = Runner(ctx).run(Numbers())
    path = stage.rows_path
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[0], rows[1] = rows[1], rows[0]  # still valid JSON, same size, other content
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from cream_plugin.loop.files import SHA256_MEMO

    SHA256_MEMO.clear()  # a new process
    with pytest.raises(DataError, match=r"numbers\.jsonl: sha256 differs.*--fresh"):
        Runner(ctx).run(Numbers())


def test_truncated_checkpoint_is_noticed_before_loading(tmp_path) -> None:
    ctx = FakeContext(tmp_path)
    runner = Runner(ctx)
    runner.run(Checkpoint("M1", "M0"))
    weights = tmp_path / "M1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5])
    with pytest.raises(DataError, match=r"M1/model\.safetensors: 5 bytes, its manifest says"):
        Runner(ctx).run(Checkpoint("cream/M2", "M1"))


def test_bad_output_leaves_nothing_complete(tmp_path) -> None:
    """A stage whose computation fails or yields an infinite number stores nothing as complete,
    so the next run computes it again instead of failing on it forever."""
    ctx = FakeContext(tmp_path)

    class Broken(Numbers):
        def compute(self, ctx: RunContext) -> Output:
            raise ValueError("rewarder 'x' returned shape (2,)")

    with pytest.raises(ValueError, match="shape"):
        Runner(ctx).run(Broken())
    assert not Artifact(tmp_path, "numbers", "").manifest_path.exists()
    with pytest.raises(DataError, match=r"infinite.*field\(s\) v"):
        Runner(ctx).run(Numbers(rows=[{"v": 1.0}, {"v": float("inf")}]))
    assert not Artifact(tmp_path, "numbers", "").manifest_path.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    good = Numbers()
    Runner(ctx).run(good)
    assert good.calls == 1


def test_pruned_checkpoint_is_trained_again_when_needed(tmp_path) -> None:
    ctx = FakeContext(tmp_path)
    runner = Runner(ctx)
    m1, m2 = Checkpoint("M1", "M0"), Checkpoint("cream/M2", "M1")
    runner.run(m1)
    runner.run(m2)
    assert prune_checkpoints(tmp_path, keep={"cream/M2"}) == ["M1"]
    # A later stage that needs M1 (e.g. an evaluation with new settings) gets it back.
    m3 = Checkpoint("cream/M3", "M1")
    runner.run(m3)
    assert m1.calls == 2 and m3.calls == 1
    assert (tmp_path / "M1" / "model.safetensors").read_bytes() == b"M1 from M0"
    # Retrained bit for bit: its digest is unchanged, so M2 stays valid.
    again = Runner(ctx)
    again.run(Checkpoint("M1", "M0"))
    again.run(Checkpoint("cream/M2", "M1"))
    assert again.reused == ["M1", "cream/M2"]


def test_pruned_checkpoint_unknown_to_this_run_names_the_fix(tmp_path) -> None:
    ctx = FakeContext(tmp_path)
    Runner(ctx).run(Checkpoint("M1", "M0"))
    prune_checkpoints(tmp_path, keep=())
    with pytest.raises(DataError, match=r"M1 .* pruned.*--fresh"):
        Runner(ctx).run(Checkpoint("cream/M2", "M1"))


def test_every_stage_is_in_the_architecture_doc() -> None:
    """Like datasette's hook check: a stage class without a row in docs/architecture.md fails."""
    import importlib
    import pkgutil

    import cream_plugin.loop.stages as pkg

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"cream_plugin.loop.stages.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, StageSpec) and obj is not StageSpec:
                found.append(obj.__name__)
    assert found
    missing = [name for name in set(found) if f"`{name}`" not in doc]
    assert not missing, f"stages missing from docs/architecture.md: {missing}"


def test_every_rank_takes_the_main_processs_branch(tmp_path) -> None:
    """A non-main rank that checks a main-only stage a moment after the main process wrote it
    must still wait at the stage's barrier (it once skipped it and the next collective paired
    with the wrong one: a deadlock in the 2-process test)."""
    from dataclasses import dataclass, field

    from cream_plugin.loop.distributed import DistContext

    @dataclass(frozen=True)
    class SecondRank(DistContext):
        main_says: list[bool] = field(default_factory=list)
        barriers: list[int] = field(default_factory=list)

        def broadcast(self, obj):  # the main process's answer, whatever this rank saw
            return self.main_says.pop(0)

        def barrier(self) -> None:
            self.barriers.append(1)

    class MainOnly(Numbers):
        parallel = Parallel.MAIN

    Runner(FakeContext(tmp_path)).run(MainOnly())  # on disk, complete, as the main wrote it
    rank = SecondRank(rank=1, world_size=2, main_says=[False, False])
    ctx = RunContext(RunConfig(), tmp_path, rank)
    spec = MainOnly()
    Runner(ctx).run(spec)
    assert rank.barriers == [1] and spec.calls == 0  # waited, and left the work to the main


class Doubled(StageSpec):
    """Reads an upstream stage's result: its digest is this stage's input without any code
    naming it."""

    step = "doubled"

    def __init__(self, source: StageSpec, name: str = "doubled") -> None:
        super().__init__(name)
        self.source = source

    def upstream(self) -> dict[str, Any]:
        return {"source": self.source}

    def compute(self, ctx: RunContext) -> Output:
        return Output(rows=[{**r, "v": 2 * r["v"]} for r in ctx.result(self.source).read_rows()])


def test_plan_says_what_a_graph_run_would_reuse_and_recompute_and_why(tmp_path) -> None:
    numbers = Numbers()
    doubled = Doubled(numbers)
    again = Doubled(doubled, "quadrupled")
    graph = [numbers, doubled, again]

    def plan(seed: int | None = None) -> list[tuple[str, str, str]]:
        config = RunConfig() if seed is None else RunConfig(seed=seed)
        runner = Runner(FakeContext(tmp_path, config))
        return [(p.spec.name, p.action, p.reason) for p in runner.plan(graph)]

    assert plan() == [(n, "compute", "artifact missing") for n in ("numbers", "doubled",
                                                                   "quadrupled")]
    assert list(tmp_path.iterdir()) == [], "planning wrote to the run folder"
    runner = Runner(FakeContext(tmp_path))
    results = runner.run_graph(graph)
    assert results["quadrupled"].inputs == {"source": results["doubled"].digest}
    assert [r["v"] for r in results["quadrupled"].read_rows()] == [
        4 * r["v"] for r in results["numbers"].read_rows()]

    assert plan() == [(n, "reuse", "complete") for n in ("numbers", "doubled", "quadrupled")]
    assert plan(seed=3) == [
        ("numbers", "compute", "setting changed: seed"),
        ("doubled", "compute", "upstream recomputed: numbers"),
        ("quadrupled", "compute", "upstream recomputed: doubled"),
    ]
    (tmp_path / "doubled.jsonl").unlink()
    assert plan()[1:] == [("doubled", "compute", "artifact missing"),
                          ("quadrupled", "compute", "upstream recomputed: doubled")]
    Runner(FakeContext(tmp_path)).run_graph(graph[:2])  # doubled again, from the same input
    manifest = json.loads((tmp_path / "quadrupled.manifest.json").read_text())
    manifest["inputs"] = {"source": "another"}
    (tmp_path / "quadrupled.manifest.json").write_text(json.dumps(manifest))
    assert plan()[2] == ("quadrupled", "compute", "input changed: source")
