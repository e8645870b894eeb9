"""Several processes (``accelerate launch`` / ``torchrun``) sharing one pipeline run.

Every process runs the same stage sequence. A stage's work (rows to sample, score or reward) is
split across ranks with :func:`shard` and put back in the original order with :func:`unshard`;
only the main process writes artifacts, the others wait at :meth:`DistContext.barrier` and then
read them. Without a launcher (no ``WORLD_SIZE`` > 1 in the environment) everything is a no-op
for one process, so the single-process path needs no torch.distributed at all.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

BARRIER_TIMEOUT = datetime.timedelta(hours=12)
"""Evaluation runs on the main process while the others wait: far longer than gloo's 30 min."""


@dataclass(frozen=True)
class DistContext:
    """Rank and world size of this process, with the few collectives the pipeline needs."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when collectives go through torch.distributed (more than one process)."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every process gets here (no-op in one process)."""
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), indexed by rank, on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """The main process's ``obj`` on every rank (so all ranks take the same branch)."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def init_distributed(device: str = "cpu") -> DistContext:
    """The context of this process; initialises torch.distributed under a launcher.

    The process group is created here (gloo on CPU, nccl on CUDA) with a long timeout so that
    accelerate and TRL's Trainer, created later, reuse it instead of making their own.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        use_nccl = device.startswith("cuda") and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
        dist.init_process_group(backend="nccl" if use_nccl else "gloo", timeout=BARRIER_TIMEOUT)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def shard(n: int, ctx: DistContext, group: Callable[[int], Hashable] | None = None) -> list[int]:
    """The indices of ``range(n)`` this rank works on, in increasing order.

    Items are dealt in contiguous, near-equal blocks. With ``group``, items with the same group
    key stay on one rank (e.g. repeats of one prompt, whose sample seeds depend on their order).
    """
    if ctx.world_size <= 1:
        return list(range(n))
    keys: list[Hashable] = [group(i) if group else i for i in range(n)]
    units: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        units.setdefault(key, []).append(i)
    blocks = list(units.values())
    per, extra = divmod(len(blocks), ctx.world_size)
    start = ctx.rank * per + min(ctx.rank, extra)
    mine = blocks[start : start + per + (1 if ctx.rank < extra else 0)]
    return sorted(i for block in mine for i in block)


def unshard(n: int, mine: Sequence[int], values: Sequence[T], ctx: DistContext) -> list[T]:
    """Gather every rank's ``values`` (one per index in its ``mine``) back into ``range(n)``
    order, on every rank."""
    if len(mine) != len(values):
        raise ValueError(f"{len(values)} values for {len(mine)} indices")
    out: list[Any] = [None] * n
    seen = 0
    for indices, vals in ctx.gather((list(mine), list(values))):
        for i, v in zip(indices, vals, strict=True):
            out[i] = v
            seen += 1
    if seen != n:
        raise RuntimeError(f"gathered {seen} values for {n} items: ranks disagree on the work")
    return out


def map_sharded(
    items: Sequence[T],
    fn: Callable[[list[T]], Sequence[Any]],
    ctx: DistContext,
    group: Callable[[int], Hashable] | None = None,
) -> list[Any]:
    """``fn`` applied to this rank's share of ``items`` (one result per item), gathered back
    in the original order on every rank."""
    mine = shard(len(items), ctx, group)
    results = fn([items[i] for i in mine]) if mine else []
    return unshard(len(items), mine, list(results), ctx)
