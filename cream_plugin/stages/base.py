"""What a stage is: a small object that names its artifact, declares what it reads (input
digests, config settings, models), how it runs across processes, and computes its output.

A stage never touches the resume protocol: :class:`cream_plugin.stages.runner.Runner` alone
skips, verifies, times, injects faults, writes and synchronises processes, for every stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from cream_plugin.stages.context import RunContext


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
    """One stage instance of a run (e.g. ``cream/iter2/pairs``).

    Subclasses set the class attributes and implement :meth:`inputs` and :meth:`compute`.
    ``settings`` are the dotted config keys the result depends on; ``version`` is the code
    version of the stage (bump it when its output changes for the same inputs).
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

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        """Digests of everything the stage reads besides config settings."""
        return {}

    def compute(self, ctx: RunContext) -> Output:
        raise NotImplementedError
