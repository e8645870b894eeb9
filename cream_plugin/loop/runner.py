"""The one place that runs stages: skip what is complete (after verifying it), compute what
is not, inject test faults, time, write on the main process and synchronise the others.

A stage's identity is its name, its code version, the config settings it declares and the
digests of its inputs. Checkpoints that were pruned to save disk are trained again on demand
when a later stage needs them (make's rule: an artifact that is gone is rebuilt from its
recipe), so pruning never makes a resume impossible.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cream_plugin.errors import ConfigError, DataError
from cream_plugin.loop.artifacts import Artifact
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec

log = logging.getLogger("cream.runner")

ENV_FAULT = "CREAM_FAULT_STAGE"
"""Testing aid: SIGKILL the run half-way through the stage whose name matches this pattern."""


def fault_point(name: str) -> None:
    pattern = os.environ.get(ENV_FAULT)
    if pattern and fnmatch.fnmatch(name, pattern):
        log.warning("fault injection: killing the run inside stage %s", name)
        os.kill(os.getpid(), signal.SIGKILL)


def config_identity(spec: StageSpec, ctx: RunContext) -> str:
    """The config part of a stage's identity: its code version and declared settings."""
    settings = ctx.config.section_hash(*spec.settings) if spec.settings else "-"
    if spec.version == 1:
        return settings  # version 1 keeps the hashes of runs made before versions existed
    return hashlib.sha256(f"v{spec.version}:{settings}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Planned:
    """What running a stage of the graph would do: ``reuse`` or ``compute``, and why."""

    spec: StageSpec
    action: str
    reason: str


class Runner:
    """Runs stage specs against a run folder; records what ran and what was reused."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        ctx.runner = self
        self.specs: dict[str, StageSpec] = {}
        self.results: dict[str, Artifact] = {}
        self.ran: list[str] = []
        self.reused: list[str] = []

    def store(self, spec: StageSpec) -> Artifact:
        return Artifact(self.ctx.run_dir, spec.name, config_identity(spec, self.ctx),
                     spec.inputs(self.ctx))

    def result(self, spec: StageSpec) -> Artifact:
        """The result of ``spec`` (an upstream stage): the one this runner ran or reused, else
        the stored artifact its identity names (its own upstream results resolved first)."""
        found = self.results.get(spec.name)
        if found is None:
            found = self.results[spec.name] = self.store(spec)
        return found

    def run_graph(self, graph: Iterable[StageSpec]) -> dict[str, Artifact]:
        """Run every stage of a graph in order (upstream first); their results by name."""
        return {spec.name: self.run(spec) for spec in graph}

    def plan(self, graph: Iterable[StageSpec]) -> list[Planned]:
        """What :meth:`run_graph` would do, stage by stage, without computing or writing
        anything: reuse a complete artifact, or compute because an upstream stage is
        recomputed, a setting or an input changed, or the artifact is missing."""
        nodes = list(graph)
        by_name = {spec.name: spec for spec in nodes}
        planned: dict[str, Planned] = {}
        for spec in nodes:
            self.specs[spec.name] = spec
            deps = [*spec.upstream_stages(), *(by_name[k] for k in spec.models() if k in by_name)]
            stale = [d.name for d in deps if planned[d.name].action != "reuse"]
            on_disk = Artifact(self.ctx.run_dir, spec.name, "").manifest() or {}
            if on_disk.get("complete") is not True:
                planned[spec.name] = Planned(spec, "compute", "artifact missing")
            elif stale:
                planned[spec.name] = Planned(spec, "compute", f"upstream recomputed: {stale[0]}"
                                             + (f" (+{len(stale) - 1})" if len(stale) > 1 else ""))
            else:
                planned[spec.name] = Planned(spec, *self._verdict(spec))
        return list(planned.values())

    def _verdict(self, spec: StageSpec) -> tuple[str, str]:
        store = self.result(spec)
        m = store.manifest()
        if not m or m.get("complete") is not True:
            return "compute", "artifact missing"
        if m.get("config_hash") != store.config_hash:
            return "compute", "setting changed: " + (", ".join(spec.settings) or "code version")
        if m.get("inputs") != store.inputs:
            old = m.get("inputs") or {}
            keys = sorted(k for k in {*old, *store.inputs} if old.get(k) != store.inputs.get(k))
            return "compute", "input changed: " + ", ".join(keys)
        if not store.is_complete():
            return "compute", "artifact missing"
        if m.get("pruned"):
            return "reuse", "complete (pruned: trained again only where a stage loads it)"
        return "reuse", "complete"

    def _complete(self, store: Artifact) -> bool:
        """Whether the stage is complete, as the main process sees it, on every process: a rank
        that looked a moment later could see a manifest the main process has just written and
        skip a barrier the others wait at."""
        return bool(self.ctx.dist.broadcast(store.is_complete()))

    def run(self, spec: StageSpec) -> Artifact:
        """The complete artifact of ``spec``: reused when complete and intact, else computed."""
        self.specs[spec.name] = spec
        store = self.store(spec)
        if self._complete(store):
            store.verify()  # a reused artifact (rows or checkpoint) is the one written
            self.reused.append(spec.name)
            self.results[spec.name] = store
            return store
        for key in spec.models():
            self.ctx.model_path(key)  # on disk and verified (trained again if pruned)
        store = self.store(spec)  # inputs may name a checkpoint that was just trained again
        if self._complete(store):
            self.reused.append(spec.name)
        else:
            self._compute_and_write(spec, store)
            self.ran.append(spec.name)
        self.results[spec.name] = store
        return store

    def ensure_checkpoint(self, key: str) -> None:
        """Make checkpoint ``key`` available on disk, verified (train it again if pruned)."""
        stage = Artifact(self.ctx.run_dir, key, "")
        manifest = stage.manifest() or {}  # read after a barrier on every rank: no race
        if manifest.get("complete") is True and not manifest.get("pruned"):
            if self.ctx.dist.is_main:
                stage.verify()
            return
        spec = self.specs.get(key)
        if spec is None:
            raise DataError(
                f"checkpoint {key} of {self.ctx.run_dir} is needed but was pruned and this run "
                "does not know how to train it again; rerun with --fresh"
            )
        log.info("checkpoint %s was pruned; training it again", key)
        for dep in spec.models():
            self.ctx.model_path(dep)
        self._compute_and_write(spec, self.store(spec))

    def _compute_and_write(self, spec: StageSpec, store: Artifact) -> None:
        ctx = self.ctx
        store.start()
        started = time.perf_counter()
        if spec.parallel is Parallel.MAIN:
            if ctx.dist.is_main:
                out = spec.compute(ctx)
                self._write(spec, store, out)
            ctx.dist.barrier()
        else:
            out = spec.compute(ctx)
            if ctx.dist.is_main:
                self._write(spec, store, out)
            ctx.dist.barrier()
        log.info("stage %s done in %.1f s", spec.name, time.perf_counter() - started)

    def _write(self, spec: StageSpec, store: Artifact, out: Output) -> None:
        meta: dict[str, Any] = {
            "method": spec.method,
            "iteration": spec.iteration,
            "step": spec.step,
            **out.manifest,
        }
        if spec.kind == "rows":
            if out.rows is None:
                raise ConfigError(f"stage {spec.name}: computed no rows")
            rows = out.rows if isinstance(out.rows, list) else list(out.rows)
            store.write_rows(
                rows, on_half=lambda: fault_point(spec.name), expected_rows=len(rows), **meta
            )
        else:
            if out.save is None:
                raise ConfigError(f"stage {spec.name}: computed no checkpoint")
            store.write_folder(out.save, on_half=lambda: fault_point(spec.name), **meta)
        if out.after_write is not None:
            out.after_write()
