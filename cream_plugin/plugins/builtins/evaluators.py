"""Built-in evaluator plugin: lm-eval tasks for ARC, OpenBookQA, Social IQa and GSM8K.

Factories import lm-eval only when called, so ``cream plugins`` stays fast.
"""

from __future__ import annotations

from typing import Any

from cream_plugin.evaluators import TASKS_PATH
from cream_plugin.plugins.hookspecs import hookimpl


def lm_eval_factory(**config: Any) -> Any:
    """Build an LMEvalEvaluator (in-memory HF model)."""
    from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator

    return LMEvalEvaluator(**config)


def vllm_factory(**config: Any) -> Any:
    """Build a VLLMEvaluator (checkpoint path, vLLM backend)."""
    from cream_plugin.evaluators.vllm_evaluator import VLLMEvaluator

    return VLLMEvaluator(**config)


@hookimpl
def register_evaluators(register: Any) -> None:
    register(
        "lm-eval",
        lm_eval_factory,
        tasks_path=TASKS_PATH,
        description="lm-evaluation-harness on an in-memory HF model (cream_benchmarks, "
        "cream_cot_benchmarks)",
    )
    register(
        "vllm",
        vllm_factory,
        tasks_path=TASKS_PATH,
        takes_path=True,
        description="the same lm-eval tasks with the vLLM backend on a checkpoint path",
    )
