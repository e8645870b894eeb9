"""vLLM sampler: a thin adapter behind the same interface as :class:`HFSampler`.

vLLM loads a model from a path (not an in-memory object), so the pipeline hands it the
checkpoint folder. Each prompt's request carries its own seed (derived from the run seed and
the prompt's text), so outputs do not depend on batching. Not run on the CPU machines this
project is developed on: it needs a GPU and the ``vllm`` extra.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from cream_plugin.sampling import prompt_keys, row_seed
from cream_plugin.types import Prompt


class VLLMSampler:
    """N seeded responses per prompt with vLLM; ``temperature=0`` is greedy."""

    def __init__(
        self,
        model_path: str,
        *,
        temperature: float = 0.8,
        top_p: float = 0.95,
        max_new_tokens: int = 256,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        **llm_options: Any,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from cream_plugin.errors import ConfigError

            raise ConfigError(
                "sampling.backend 'vllm' needs the vllm package: pip install 'cream-plugin[vllm]'"
            ) from exc
        self.llm = LLM(
            model=str(model_path),
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            **llm_options,
        )
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.stats: Counter[str] = Counter()

    def generate(self, prompts: Sequence[Prompt], n: int, *, seed: int) -> list[list[str]]:
        """``n`` responses per prompt in prompt order; one seeded request per prompt."""
        from vllm import SamplingParams

        greedy = self.temperature == 0
        conversations = [
            [{"role": "user", "content": p}] if isinstance(p, str) else list(p) for p in prompts
        ]
        keys = prompt_keys([json.dumps(c, sort_keys=True) for c in conversations])
        params = [
            SamplingParams(
                n=n,
                temperature=self.temperature,
                top_p=1.0 if greedy else self.top_p,
                max_tokens=self.max_new_tokens,
                seed=row_seed(seed, key, 0) % (2**31),
                skip_special_tokens=True,
            )
            for key in keys
        ]
        outputs = self.llm.chat(conversations, params, use_tqdm=True)
        results = [[c.text.strip() for c in out.outputs] for out in outputs]
        self.stats["prompts"] += len(prompts)
        self.stats["responses"] += sum(len(r) for r in results)
        self.stats["empty"] += sum(1 for r in results for t in r if not t)
        self.stats["new_tokens"] += sum(len(c.token_ids) for out in outputs for c in out.outputs)
        return results
