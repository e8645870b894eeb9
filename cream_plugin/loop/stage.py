"""What a stage is: a small object that names its artifact, declares what it reads (input
digests, config settings, models), how it runs across processes, and computes its output.

A stage never touches the resume protocol: :class:`cream_plugin.loop.runner.Runner` alone
skips, verifies, times, injects faults, writes and synchronises processes, for every stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from cream_plugin.loop.context import RunContext


class Parallel(StrEnum):
    """How a stage uses several processes (``accelerate launch``)."""

    REPLICATED = "replicated"  # every process computes the same (cheap) result
    SHARDED = "sharded"  # rows are split across processes and gathered back in order
    DDP = "ddp"  # every process trains (DDP replica, or FSDP/ZeRO-3 shard); the main one saves
    MAIN = "main"  # the main process computes alone; the others wait


@dataclass
class Output:
    """What a stage computed: rows (a rows artifact) or a folder writer (a checkpoint)."""

    rows: Iterable[Mapping[str, Any]] | None = None
    expected_rows: int | None = None
    save: Callable[[Path], None] | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    after_write: Callable[[], None] | None = None


class StageSpec:
    """One stage instance of a run (e.g. ``cream/iter2/pairs``), a node of the stage graph.

    Subclasses set the class attributes and implement :meth:`upstream` (the stages whose
    results they read: the graph's edges) and :meth:`compute`. ``settings`` are the dotted
    config keys the result depends on; ``version`` is the code version of the stage (bump it
    when its output changes for the same inputs). A stage reads an upstream result with
    ``ctx.result(stage)``; the runner resolves it, and the upstream digests become this
    stage's identity without any code naming them (:meth:`inputs`).
    """

    step: ClassVar[str] = ""
    kind: ClassVar[str] = "rows"
    parallel: ClassVar[Parallel] = Parallel.REPLICATED
    version: ClassVar[int] = 1
    settings: tuple[str, ...] = ()

    def __init__(self, name: str, method: str = "", iteration: int = 0) -> None:
        self.name = name
        self.method = method
        self.iteration = iteration

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def models(self) -> tuple[str, ...]:
        """Checkpoint keys this stage loads when it computes (made available first)."""
        return ()

    def upstream(self) -> dict[str, StageSpec | Sequence[StageSpec] | None]:
        """The stages whose results this one reads, by input name (a sequence joins their
        digests in order; None is an absent edge and adds nothing)."""
        return {}

    def upstream_stages(self) -> list[StageSpec]:
        """Every upstream stage, flattened (the graph's edges into this node)."""
        found: list[StageSpec] = []
        for value in self.upstream().values():
            if isinstance(value, StageSpec):
                found.append(value)
            elif value is not None:
                found.extend(value)
        return found

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        """Digests of everything the stage reads besides config settings: by default its
        upstream results' digests; stages that read files or models add theirs."""
        digests: dict[str, str] = {}
        for name, value in self.upstream().items():
            if isinstance(value, StageSpec):
                digests[name] = ctx.result(value).digest
            elif value is not None:
                digests[name] = ":".join(ctx.result(s).digest for s in value)
        return digests

    def compute(self, ctx: RunContext) -> Output:
        raise NotImplementedError


def given_rows(name: str, rows: list[dict[str, Any]]) -> StageSpec:
    """A stage whose result is the given rows: the upstream node of a stage run alone (tests,
    studies that start from rows they already have); run it through the runner first, like any
    stage of a graph."""

    class GivenRows(StageSpec):
        step = "given"

        def compute(self, ctx: RunContext) -> Output:
            return Output(rows=list(rows))

    return GivenRows(name)
