"""Built-in samplers: ``hf`` (transformers ``generate``) and ``vllm`` (needs the vllm extra).

The factories import their backend on call so listing plugins stays fast.
"""

from __future__ import annotations

from typing import Any

from cream_plugin.hookspecs import hookimpl


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
    from cream_plugin.sampling import HFSampler

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
    model_path: str,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = 256,
    **llm_options: Any,
) -> Any:
    """Seeded sampling with vLLM from a checkpoint path (GPU; pip install 'cream-plugin[vllm]')."""
    from cream_plugin.sampling_vllm import VLLMSampler

    return VLLMSampler(
        model_path,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        **llm_options,
    )


@hookimpl
def register_samplers(register: Any) -> None:
    register("hf", hf_sampler)
    register("vllm", vllm_sampler)
