"""The same lm-eval tasks through lm-eval's vLLM backend, for a checkpoint on disk.

vLLM loads weights itself, so this evaluator takes a path (or Hub id), never an in-memory
model. Thin adapter: all task handling is LMEvalEvaluator's. Not runnable without a GPU and
the optional ``vllm`` extra.
"""

from __future__ import annotations

from typing import Any

from cream_plugin.errors import ConfigError
from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator


class VLLMEvaluator(LMEvalEvaluator):
    """lm-eval with the vLLM backend; ``evaluate(path, tokenizer=None)``."""

    def __init__(self, *args: Any, gpu_memory_utilization: float = 0.8, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gpu_memory_utilization = gpu_memory_utilization

    def evaluate(self, model: Any, tokenizer: Any = None, **options: Any) -> list[dict[str, Any]]:
        if not isinstance(model, str):
            raise ConfigError(
                "the vllm evaluator takes a checkpoint path or Hub id, not a model object; "
                "save the model first or use the 'lm-eval' evaluator"
            )
        try:
            from lm_eval.models.vllm_causallms import VLLM
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ConfigError(
                f"the vllm evaluator needs vllm: pip install 'cream-plugin[vllm]' ({exc})"
            ) from exc
        lm = VLLM(
            pretrained=model,
            tokenizer=tokenizer if isinstance(tokenizer, str) else None,
            batch_size=options.pop("batch_size", "auto"),
            gpu_memory_utilization=self.gpu_memory_utilization,
        )
        return self.evaluate_lm(lm, **options)
