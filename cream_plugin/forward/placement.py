"""Where log-prob scoring holds a model across the processes of a launch.

A model that fits one device with room to spare is held whole by every process and the rows
are split across ranks (``replica``: no communication, the fastest). A larger one is sharded
across the processes with torch's FSDP2 (``sharded``): each forward gathers one decoder layer
at a time, so every rank must step through the same batches; each then scores every row, and
the main process writes them. Sampling and evaluation of such a model go to vLLM with tensor
parallelism (``model.vllm_options``), which shards it across GPUs inside one engine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cream_plugin.config import ModelConfig
from cream_plugin.errors import ConfigError

log = logging.getLogger(__name__)

REPLICA_SHARE = 0.6
"""A replica is chosen while its weights take at most this share of one device's memory: the
rest holds activations and logits of a scoring batch (a 128k vocabulary's fp32 logits are 0.5 MB
per token)."""

BYTES_PER_PARAMETER = {"float32": 4, "bfloat16": 2, "float16": 2}


def choose_placement(weight_bytes: int | None, device_bytes: int | None, world_size: int) -> str:
    """``replica`` or ``sharded`` for ``auto``: shard only when several processes exist and the
    weights would crowd one device (unknown sizes keep the replica, which is always correct)."""
    if world_size <= 1 or weight_bytes is None or device_bytes is None:
        return "replica"
    return "replica" if weight_bytes <= REPLICA_SHARE * device_bytes else "sharded"


def parameter_count(model: ModelConfig) -> int | None:
    """The model's exact parameter count from its config alone (built on the meta device, so
    it costs no memory); None when there is no readable config (a GGUF file, an uncached Hub id
    offline)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from cream_plugin.forward.models import resolve_model_path

    try:
        path, gguf = resolve_model_path(model.name, model.gguf_file)
        if gguf:
            return None
        config = AutoConfig.from_pretrained(path, trust_remote_code=model.trust_remote_code)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(
                config, trust_remote_code=model.trust_remote_code
            )
    except (OSError, ValueError, KeyError) as exc:
        log.warning("model %s: size unknown (%s); scoring keeps a replica per process",
                    model.name, exc)
        return None
    return int(sum(p.numel() for p in skeleton.parameters()))


def weight_bytes(model: ModelConfig) -> int | None:
    """Bytes of the model's weights in ``model.dtype`` (``auto``: counted as float32)."""
    count = parameter_count(model)
    if count is None:
        return None
    return count * BYTES_PER_PARAMETER.get(model.dtype, 4)


def device_bytes(device: str) -> int | None:
    """Total memory of the accelerator ``device`` (a resolved ``cuda:N``); None for the CPU,
    where processes share the host's memory and sharding saves none of it."""
    if not device.startswith("cuda"):
        return None
    import torch

    index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    return int(torch.cuda.get_device_properties(index).total_memory)


def resolve_placement(model: ModelConfig, world_size: int) -> str:
    """The placement scoring uses in this launch: the configured one, or ``auto`` decided from
    the weights' size and one device's memory. With one process there is nothing to shard."""
    wanted = model.scoring_placement
    if world_size <= 1:
        return "replica"
    if wanted != "auto":
        return wanted
    from cream_plugin.forward.models import pick_device

    device = pick_device(model.device)
    have = device_bytes(device)
    if have is None:
        return "replica"
    return choose_placement(weight_bytes(model), have, world_size)


def check_sharded_run(model: ModelConfig, world_size: int, *, sampling_backend: str,
                      evaluator: str, engine: str) -> None:
    """Refuse, before any work, a run whose model ``auto`` found too large for one device but
    whose other stages would still load it whole on each process."""
    if model.scoring_placement != "auto" or resolve_placement(model, world_size) != "sharded":
        return
    whole = []
    if sampling_backend != "vllm":
        whole.append(f"sampling.backend={sampling_backend} (use vllm)")
    if evaluator != "vllm":
        whole.append(f"evaluation.evaluator={evaluator} (use vllm)")
    if engine not in ("fsdp", "deepspeed"):
        whole.append(f"training under {engine} (use --accelerate-config fsdp or zero3)")
    if whole:
        raise ConfigError(
            f"model {model.name}: its weights take more than {REPLICA_SHARE:.0%} of one device, "
            "so log-prob scoring shards it across the processes (model.scoring_placement=auto), "
            f"but these would load a whole copy per process: {'; '.join(whole)}. vLLM shards "
            "sampling and evaluation with model.vllm_options.tensor_parallel_size; or set "
            "model.scoring_placement=replica to try anyway"
        )


def shard_for_scoring(model: Any, device: str, world_size: int) -> Any:
    """``model`` sharded with FSDP2 across the ``world_size`` processes of the default process
    group, for forwards only: each decoder layer is its own unit, gathered for its forward and
    freed after it, so a rank holds 1/world of the weights plus one layer. The model may sit on
    the CPU (loaded there to avoid one whole copy per GPU); FSDP moves each shard to ``device``.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device_type = "cuda" if device.startswith("cuda") else "cpu"
    mesh = init_device_mesh(device_type, (world_size,))
    layer_types = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in layer_types]
    if not layers:
        raise ConfigError(
            f"{type(model).__name__} names no decoder layer class (_no_split_modules); "
            "set model.scoring_placement=replica for it"
        )
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model.eval()


@contextmanager
def root_gathered(model: Any) -> Iterator[None]:
    """Hold the root unit's parameters (embeddings, final norm, LM head) gathered.

    Scoring calls the decoder stack and the LM head separately (the head projects completion
    positions only), so the root's forward hook, which would gather them, never fires; the
    decoder layers are units of their own and gather themselves. A no-op for other models.
    """
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()
