"""The iterative self-rewarding loop: M0 -> SFT -> (sample -> reward -> consistency -> pairs ->
train -> evaluate) x T, for one or more methods, resumable stage by stage.

The stage graph (:mod:`cream_plugin.loop.graph`) says *which* stages a run needs, in order,
and is built whole before any work; every stage is an object in :mod:`cream_plugin.loop.stages` and
one :class:`~cream_plugin.loop.runner.Runner` skips, verifies, computes and writes them
all. Iteration 1 starts from the shared SFT model M1 for every method, so its samples and
log-probs are computed once and shared.

Several processes (``accelerate launch --num_processes K ... -m cream_plugin.cli run``) run the
same stage sequence; each stage declares how it splits the work (cream_plugin.loop.stage).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from cream_plugin.config import RunConfig
from cream_plugin.errors import ConfigError
from cream_plugin.loop.artifacts import (
    Artifact,
    atomic_write_text,
    prune_checkpoints,
    read_manifests,
)
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.distributed import init_distributed
from cream_plugin.loop.graph import StageGraph, checkpoint_key
from cream_plugin.loop.jsonl import write_jsonl
from cream_plugin.loop.preflight import preflight
from cream_plugin.loop.run_folder import RunFolder, check_output_dir
from cream_plugin.loop.runner import ENV_FAULT, Planned, Runner
from cream_plugin.loop.stage import StageSpec
from cream_plugin.loop.stages.evaluate import EvaluateStage
from cream_plugin.plugins.methods import Method

log = logging.getLogger("cream.pipeline")

__all__ = ["ENV_FAULT", "Pipeline", "checkpoint_key"]


def kept_checkpoints(config: RunConfig, methods: Mapping[str, Method]) -> set[str]:
    """The checkpoint folders ``keep_checkpoints`` names, beside the final ones (always kept).

    Entries: ``final`` (each method's last model, kept anyway), ``all``, ``M<k>`` (model M_k of
    every method; M1 is the shared SFT model, iteration t trains M_t into M_(t+1)),
    ``<method>/M<k>``, or the old integer spelling ``k``, which has always meant M_k (so ``1``
    keeps M1, not the model iteration 1 trained). A name this run never trains is an error,
    raised before the run folder is touched.
    """
    trained = {m for m, spec in methods.items() if spec.trains}
    last = config.iterations + 1
    every = {"M1"} | {checkpoint_key(m, t) for m in trained for t in range(2, last + 1)}
    keep: set[str] = set()
    for i, entry in enumerate(config.keep_checkpoints):
        key = f"keep_checkpoints[{i}]"
        name = f"M{entry}" if isinstance(entry, int) else str(entry).strip()
        method, _, model = name.rpartition("/")
        if name == "all":
            keep |= every
        elif name == "final":
            continue
        elif model[:1] == "M" and model[1:].isdigit():
            k = int(model[1:])
            chosen = {checkpoint_key(m, k) for m in ([method] if method else trained)} & every
            if k == 1 and not method:
                chosen = {"M1"}
            if not chosen:
                raise ConfigError(
                    f"{key}: {entry!r} is not a checkpoint of this run (it trains M1 and, per "
                    f"method {', '.join(sorted(trained)) or '(none)'}, M2..M{last})")
            keep |= chosen
        else:
            raise ConfigError(
                f"{key}: {entry!r} is not a checkpoint name (expected final, all, M<k>, "
                f"<method>/M<k>, or an integer k meaning M<k>)")
    return keep


class Pipeline:
    """Runs the configured methods for ``config.iterations`` iterations in ``run_dir``.

    Everything is validated in the constructor (config, methods, components, data files,
    device) before the run folder is touched. Studies that run a graph of their own use
    :meth:`graph`, :meth:`session` and :meth:`run_graph`.
    """

    def __init__(self, config: RunConfig, run_dir: str | os.PathLike[str] | None = None) -> None:
        self.config = config
        self.run_dir = check_output_dir(str(run_dir or config.output_dir))
        self.methods: dict[str, Method] = preflight(config)
        self.keep = kept_checkpoints(config, self.methods)
        self.folder = RunFolder(self.run_dir)
        self.dist = init_distributed(config.model.device)
        self.ctx = RunContext(config, self.run_dir, self.dist)
        self.runner = Runner(self.ctx)

    def graph(self) -> StageGraph:
        """An empty stage graph of this run (``.whole_run()`` adds every configured stage)."""
        return StageGraph(self.config, self.methods, self.run_dir)

    def plan(self) -> list[Planned]:
        """What :meth:`run` would reuse and compute, and why; reads the folder, writes nothing
        and takes no lock (``cream run --dry-run``)."""
        return self.runner.plan(self.graph().whole_run())

    @contextmanager
    def session(self, fresh: bool = False, adopt: bool = False,
                break_lock: bool = False) -> Iterator[None]:
        """The run folder claimed, locked (and emptied with ``fresh``) on the main process for
        the duration; models and the lock are released at the end, on a failure too."""
        if self.dist.is_main:
            try:
                self._prepare(fresh, adopt, break_lock)
            except BaseException:
                self.dist.broadcast(False)
                raise
            self.dist.broadcast(True)
        elif not self.dist.broadcast(False):
            raise SystemExit(1)  # the main process reported why
        try:
            yield
        finally:
            self.ctx.release()  # an open vLLM engine's processes too, on a failure
            if self.dist.is_main:
                self.folder.release()

    def _prepare(self, fresh: bool, adopt: bool, break_lock: bool = False) -> None:
        cfg = self.config
        self.folder.claim(adopt=adopt, methods=self.methods)
        self.folder.acquire(break_lock=break_lock)
        if fresh:
            self.folder.wipe()
            self.folder.claim(adopt=True, methods=())
        self.folder.clean_leftovers()
        atomic_write_text(self.run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))

    def run_graph(self, graph: Iterable[StageSpec]) -> dict[str, Artifact]:
        """Run a stage graph in order; each evaluation's scores go to the results table."""
        from cream_plugin.loop.stages.evaluate import metric_rows
        from cream_plugin.report.results import append_results

        results: dict[str, Artifact] = {}
        for spec in graph:
            results[spec.name] = stage = self.runner.run(spec)
            if isinstance(spec, EvaluateStage):
                if self.dist.is_main:
                    append_results(self.run_dir, metric_rows(stage.read_rows()))
                self.dist.barrier()
        return results

    def run(self, fresh: bool = False, adopt: bool = False, break_lock: bool = False) -> Path:
        """Run every configured method; returns the run folder (report included).

        ``fresh`` deletes cream's own files from the folder first; ``adopt`` lets cream use a
        non-empty folder it did not create; ``break_lock`` takes over another host's lock. The
        whole stage graph is built before any work.
        """
        graph = self.graph().whole_run()
        with self.session(fresh, adopt, break_lock):
            self.run_graph(graph)
            self.ctx.release()
            if self.dist.is_main:
                self._finish(graph.finals())
            self.dist.barrier()
        return self.run_dir

    def _finish(self, finals: set[str]) -> None:
        from cream_plugin.cards import write_run_cards
        from cream_plugin.report.evidence import write_instruments
        from cream_plugin.report.markdown import write_report

        keep = finals | last_checkpoints(self.run_dir)
        keep |= self.keep
        prune_checkpoints(self.run_dir, keep)
        write_tables(self.run_dir)
        write_instruments(self.run_dir, self.config.seed)
        write_report(self.run_dir)
        write_run_cards(self.run_dir)  # after the manifests: cards change no digest
        self.folder.clean_leftovers()


def last_checkpoints(run_dir: Path) -> set[str]:
    """Every method's latest checkpoint in the folder, whichever run made it: pruning never
    removes another method's final model."""
    latest: dict[str, tuple[int, str]] = {}
    for name, m in read_manifests(run_dir).items():
        if m.get("kind") != "folder" or m.get("pruned"):
            continue
        method, _, last = name.rpartition("/")
        if last.startswith("M") and last[1:].isdigit():
            t = int(last[1:])
            if t > latest.get(method, (-1, ""))[0]:
                latest[method] = (t, name)
    return {name for _, name in latest.values()}


def write_tables(run_dir: Path) -> None:
    """consistency.jsonl and timings.jsonl for the report, rebuilt from the manifests."""
    consistency, timings = [], []
    for name, m in read_manifests(run_dir).items():
        if "step" not in m:
            continue
        timings.append(
            {
                "method": {"": "(all)", "shared": "(shared)"}.get(m.get("method", ""),
                                                                 m.get("method")),
                "iteration": m.get("iteration", 0),
                "stage": m["step"],
                "name": name,
                "seconds": m["seconds"],
                "engine_start_seconds": m.get("engine_start_seconds"),
            }
        )
        if m["step"] == "consistency":
            for metric, s in m["summary"].items():
                consistency.append(
                    {"method": m["method"], "iteration": m["iteration"], "metric": metric, **s}
                )
    for file, rows in (("consistency.jsonl", consistency), ("timings.jsonl", timings)):
        write_jsonl(run_dir / file, rows)

