"""The shared resources of a run that stages use: config, run folder, processes, the
tokenizer, one model in memory at a time (an HF model or a vLLM engine), and the components
built from plugins."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cream_plugin.config import RunConfig
from cream_plugin.errors import ConfigError
from cream_plugin.loop.distributed import DistContext

if TYPE_CHECKING:
    from cream_plugin.loop.artifacts import Artifact


class Upstream(Protocol):
    """What the context needs of a stage to name it (the stage graph's node)."""

    name: str


class Resolver(Protocol):
    """What the context asks of the runner: upstream results and checkpoints on disk (the
    runner sets itself here; the context never imports it)."""

    def result(self, spec: Any) -> Artifact: ...

    def ensure_checkpoint(self, key: str) -> None: ...


class RunContext:
    """Everything a stage's ``compute`` may use; owned by the pipeline, shared by its stages.

    ``engine_factory`` starts vLLM engines (``VLLMEngine`` when None; tests put a fake here).
    """

    engine_factory: Callable[..., Any] | None = None

    def __init__(self, config: RunConfig, run_dir: Path, dist: DistContext) -> None:
        self.config = config
        self.run_dir = run_dir
        self.dist = dist
        self.runner: Resolver | None = None
        self._models: dict[str, Any] = {}
        self._components: dict[tuple[str, str], Any] = {}
        self._engine: Any = None
        self._engine_path: str | None = None

    # -- upstream results ------------------------------------------------------------------
    def result(self, spec: Upstream) -> Artifact:
        """The stored result of an upstream stage of the graph, as the runner resolved it."""
        if self.runner is None:
            raise ConfigError(f"stage {spec.name}: no runner resolves upstream results")
        return self.runner.result(spec)

    # -- models ----------------------------------------------------------------------------
    @cached_property
    def tokenizer(self) -> Any:
        from cream_plugin.forward.models import load_tokenizer

        m = self.config.model
        return load_tokenizer(m.name, gguf_file=m.gguf_file, trust_remote_code=m.trust_remote_code)

    def model_path(self, key: str) -> str:
        """Where model ``key`` lives: the configured base for M0, else its checkpoint folder
        (trained again first if it was pruned)."""
        if key == "M0":
            return self.config.model.name
        if self.runner is not None:
            self.runner.ensure_checkpoint(key)
        return str(self.run_dir / key)

    def model_digest(self, key: str) -> str:
        if key == "M0":
            from cream_plugin.loop.identity import model_digest

            m = self.config.model
            return f"M0:{self.config.section_hash('model')}:{model_digest(m.name, m.gguf_file)}"
        from cream_plugin.loop.artifacts import Artifact

        manifest = Artifact(self.run_dir, key, "").manifest()
        if not manifest or manifest.get("complete") is not True:
            raise ConfigError(f"checkpoint {key} of {self.run_dir} is not complete")
        return str(manifest["digest"])

    def load(self, key: str, *, sharded: bool = False, beside: bool = False) -> Any:
        """Load a model of the run (M0 = the configured base, else a checkpoint folder).

        ``sharded``: FSDP2-sharded across the processes for lock-step forwards (see
        :mod:`cream_plugin.forward.placement`); only log-prob scoring asks for it. ``beside``: keep
        the models already loaded (the exact-KL pass holds two at once); otherwise they are
        released. """
        from cream_plugin.forward.models import load_model, pick_device

        slot = f"{key}#sharded" if sharded else key
        if slot not in self._models:
            m = self.config.model
            path = self.model_path(key)
            if not beside:
                self.release()
            model = load_model(
                path,
                gguf_file=m.gguf_file if key == "M0" else None,
                dtype=m.dtype,
                device="cpu" if sharded else m.device,
                trust_remote_code=m.trust_remote_code,
            )
            if sharded:
                from cream_plugin.forward.placement import shard_for_scoring

                model = shard_for_scoring(model, pick_device(m.device), self.dist.world_size)
            self._models[slot] = model
        return self._models[slot]

    @cached_property
    def scoring_sharded(self) -> bool:
        """Whether log-prob scoring shards the model (every process scores every row) rather
        than keeping a replica per process (rows split across processes)."""
        from cream_plugin.forward.placement import resolve_placement

        return resolve_placement(self.config.model, self.dist.world_size) == "sharded"

    def vllm_engine(self, key: str) -> tuple[Any, float]:
        """An open vLLM engine on model ``key``'s checkpoint and the start cost this call paid.

        The engine stays open for the next stage on the same checkpoint (an iteration's
        evaluation of M_t and its sampling from M_t share one start): the second value is its
        ``start_seconds`` when this call started it, else 0. Starting one releases whatever
        else is in memory; :meth:`load` and :meth:`release` close it (training and the HF
        stages need the memory, and a GPU engine reserves most of it). Options are the run's
        (``model.dtype``, ``model.vllm_options``) and the platform defaults of
        :func:`~cream_plugin.forward.sampling_vllm.engine_options`, so every stage gets the same
        engine.
        """
        path = self.model_path(key)
        if self._engine is not None and self._engine_path == path and not self._engine.closed:
            return self._engine, 0.0
        self.release()
        factory = self.engine_factory
        if factory is None:
            from cream_plugin.forward.sampling_vllm import VLLMEngine

            factory = VLLMEngine
        self._engine = factory(path, dtype=self.config.model.dtype,
                               **self.config.model.vllm_options)
        self._engine_path = path
        return self._engine, float(self._engine.start_seconds)

    def release(self) -> None:
        """Keep at most one model in memory: 135M fp32 is 0.5 GB, a 7B model far more."""
        self._models.clear()
        if self._engine is not None:
            self._engine.close()
            self._engine = self._engine_path = None
        for component in self._components.values():
            close = getattr(component, "close", None)
            if callable(close):
                close()
        self._components.clear()
        gc.collect()

    # -- components ------------------------------------------------------------------------
    def component(
        self,
        kind: str,
        name: str,
        resources: dict[str, Callable[[], Any]],
        options: dict[str, Any] | None = None,
        cache_key: str | None = None,
    ) -> Any:
        """Build a registered component once per ``cache_key`` (released with the models)."""
        from cream_plugin.plugins.registry import build

        key = (kind, cache_key or name)
        if cache_key is None or key not in self._components:
            built = build(kind, name, resources, options or {})
            if cache_key is None:
                return built
            self._components[key] = built
        return self._components[key]

    # -- multi-process helpers ---------------------------------------------------------------
    def per_device(self, batch_size: int, what: str) -> int:
        """The per-process share of a global batch size (the same optimiser steps on K ranks)."""
        world = self.dist.world_size
        if batch_size % world:
            raise ConfigError(
                f"{what}={batch_size} is not divisible by the {world} processes; "
                "the global batch must split evenly to match a single-process run"
            )
        return batch_size // world

    def scratch_dir(self, name: str) -> Path:
        """A per-process scratch folder for a Trainer, journaled so a kill leaves nothing."""
        from cream_plugin.loop.artifacts import TempJournal

        path = self.run_dir / f".{name.replace('/', '-')}.trainer-rank{self.dist.rank}"
        if not path.exists():
            TempJournal(self.run_dir).note(path)
        return path

    @staticmethod
    def env(name: str) -> str:
        return os.environ.get(name, "")
