"""The same lm-eval tasks through lm-eval's vLLM backend, for a checkpoint on disk.

vLLM loads weights itself, so this evaluator takes a checkpoint folder (or model spec) or an
open :class:`cream_plugin.forward.sampling_vllm.VLLMEngine`, never an in-memory model. Given a path
it starts an engine, scores and shuts it down (``start_seconds`` is that start); given an engine
(shared with the sampler of the same model) it scores on it and leaves it open. All task
handling is LMEvalEvaluator's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cream_plugin.errors import ConfigError
from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator
from cream_plugin.forward.sampling_vllm import VLLMEngine

_PATCH_LOCK = threading.Lock()


@contextmanager
def _engine_reused(engine: VLLMEngine) -> Iterator[None]:
    """lm-eval's ``VLLM`` builds its ``LLM`` in ``__init__`` from a module-level name; while
    this is active that name returns the already started engine instead of starting another."""
    from lm_eval.models import vllm_causallms

    with _PATCH_LOCK:
        original = vllm_causallms.LLM
        vllm_causallms.LLM = lambda **_: engine.llm
        try:
            yield
        finally:
            vllm_causallms.LLM = original


def lm_on_engine(engine: VLLMEngine) -> Any:
    """An lm-eval ``VLLM`` language model that runs on ``engine`` (no second engine)."""
    from lm_eval.models.vllm_causallms import VLLM

    if engine.closed:
        raise ConfigError(f"the vLLM engine on {engine.model_path} is closed")
    with _engine_reused(engine):
        return VLLM(pretrained=engine.model_path, batch_size="auto",
                    max_model_len=engine.options.get("max_model_len"))


class VLLMEvaluator(LMEvalEvaluator):
    """lm-eval with the vLLM backend; ``evaluate(path_or_engine)``.

    Engine options (``dtype``, ``max_model_len``, ``gpu_memory_utilization``, any other
    ``vllm.LLM`` argument in ``engine_options``) apply to the engines it starts itself.
    ``batch_size`` and ``decode_loop`` are accepted for the pipeline's sake and unused: vLLM
    schedules its own batches. ``takes_vllm_engine`` tells the pipeline to hand ``evaluate``
    the run's open engine on the model (shared with sampling) rather than a path.
    """

    takes_vllm_engine = True

    def __init__(
        self,
        *args: Any,
        dtype: str = "float32",
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        engine_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.engine_kwargs: dict[str, Any] = {
            "dtype": dtype,
            "max_model_len": max_model_len,
            "gpu_memory_utilization": gpu_memory_utilization,
            **(engine_options or {}),
        }
        self.start_seconds = 0.0

    def evaluate(self, model: Any, tokenizer: Any = None, **options: Any) -> list[dict[str, Any]]:
        """Rows as ``LMEvalEvaluator.evaluate``; ``model`` is a path, a spec or a VLLMEngine.

        ``tokenizer`` is ignored (the checkpoint's own is used); ``batch_size`` and
        ``decode_loop`` options are dropped.
        """
        options.pop("batch_size", None)
        options.pop("decode_loop", None)
        if isinstance(model, VLLMEngine):
            self.start_seconds = 0.0
            return self.evaluate_lm(lm_on_engine(model), **options)
        if not isinstance(model, str | Path):
            raise ConfigError(
                "the vllm evaluator takes a checkpoint path or Hub id (or a VLLMEngine), not a "
                f"{type(model).__name__} object; save the model first or use the 'lm-eval' "
                "evaluator"
            )
        with VLLMEngine(model, **self.engine_kwargs) as engine:
            self.start_seconds = engine.start_seconds
            return self.evaluate_lm(lm_on_engine(engine), **options)
