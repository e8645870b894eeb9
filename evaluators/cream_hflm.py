"""``cream-hf``: lm-eval's HFLM that scores a multiple-choice context once, not once per choice.

Stock ``HFLM._loglikelihood_tokens`` runs every (context, choice) pair as its own sequence, so
an ARC question with four answers runs its question four times and projects every position onto
the vocabulary. Here the requests that share a context (the same token ids, as HFLM's own
``_encode_pair`` split them) are scored from one prefill of that context: the context minus its
last token fills a KV cache once, and the choices run as one batch that attends to the cached
context, each row being ``[last context token] + continuation[:-1]``, so every logit that scores a
continuation token comes from the choice pass. Token ids, positions and the causal window are
those of HFLM's sequence ``context + continuation``, so the log-likelihoods agree with HFLM's to
float rounding (checked within 1e-4) and the is-greedy flags are the same.

What cannot share a context takes HFLM's own path: a context with a single request,
``loglikelihood_rolling`` windows, sequences that HFLM would left-truncate at ``max_length``,
seq2seq models, ``batch_size="auto"`` and models whose cache is not plain full attention
(sliding windows). ``generate_until`` is ``DecodeLoopHFLM``'s.

Registered with lm-eval as ``cream-hf`` when this module is imported: in Python through
``LMEvalEvaluator``; from the shell through ``python -m cream_plugin.lm_eval_cli`` (lm-eval
0.4.13 has no plugin entry point, so plain ``lm_eval`` cannot import it by itself).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from cream_plugin.evaluators.decode_loop_hflm import DecodeLoopHFLM

Request = tuple[Any, list[int], list[int]]
"""What ``_loglikelihood_tokens`` receives: ((context, continuation) or None, ids, ids)."""


def _flag(value: Any) -> bool:
    """A model_args value as a bool (lm-eval passes ``False`` from the shell as a bool, a
    Python caller may pass a string)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off", "")
    return bool(value)


def plain_attention(model: Any) -> bool:
    """Whether every layer attends to the whole cache (no sliding window, no hybrid layers)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    config = config or model.config
    layer_types = getattr(config, "layer_types", None) or []
    return not getattr(config, "sliding_window", None) and all(
        t == "full_attention" for t in layer_types)


@register_model("cream-hf")
class CreamHFLM(DecodeLoopHFLM):
    """HFLM with shared-context log-likelihoods and ``DecodeLoopHFLM``'s greedy generation.

    ``shared_context=False`` (``--model_args ...,shared_context=False``) scores log-likelihoods
    exactly as HFLM; ``decode_loop=False`` generates with HFLM's ``generate``.
    """

    def __init__(self, *args: Any, shared_context: Any = True, decode_loop: Any = True,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_context = _flag(shared_context)
        self.decode_loop = _flag(decode_loop)
        self.shared_stats = {"shared_requests": 0, "stock_requests": 0, "contexts": 0,
                             "forward_tokens": 0}

    # -- generation: DecodeLoopHFLM unless turned off ------------------------------------------

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        if self.decode_loop:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        return list(HFLM.generate_until(self, requests, disable_tqdm=disable_tqdm))

    def _model_generate(self, context: Any, max_length: int, stop: list[str],
                        **generation_kwargs: Any) -> Any:
        if self.decode_loop:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        return HFLM._model_generate(self, context, max_length, stop, **generation_kwargs)

    # -- log-likelihood -----------------------------------------------------------------------

    def shared_context_reason(self) -> str | None:
        """Why no request can share its context here, or None when they can."""
        if not self.shared_context:
            return "shared_context=False"
        if self.backend != "causal":
            return "not a causal LM"
        if not isinstance(self.batch_size, int):
            return f"batch_size={self.batch_size!r}"
        if not plain_attention(self.model):
            return "sliding-window or hybrid attention"
        return None

    def _shareable(self, request: Request) -> bool:
        """A request scored from a shared context: a real request (rolling windows carry no
        key) whose whole sequence fits, as HFLM would not truncate it, with a context of at
        least two tokens (one fills the cache, the last starts the choice row)."""
        key, context, continuation = request
        return (key is not None and len(context) >= 2 and len(continuation) >= 1
                and len(context) + len(continuation) <= self.max_length + 1)

    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        """HFLM's result for every request, in request order; requests that share a context
        token for token are scored from one prefill of it, the rest by HFLM."""
        if override_bs is not None or self.shared_context_reason() is not None:
            return list(super()._loglikelihood_tokens(
                requests, disable_tqdm=disable_tqdm, override_bs=override_bs))
        groups: dict[tuple[int, ...], list[int]] = {}
        stock: list[int] = []
        for i, request in enumerate(requests):
            if self._shareable(request):
                groups.setdefault(tuple(request[1]), []).append(i)
            else:
                stock.append(i)
        for context, members in list(groups.items()):
            if len(members) < 2:  # nothing to share: HFLM's path
                stock.extend(members)
                del groups[context]
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        if stock:
            stock.sort()
            out = super()._loglikelihood_tokens([requests[i] for i in stock],
                                                disable_tqdm=disable_tqdm)
            for i, answer in zip(stock, out, strict=True):
                results[i] = answer
        self.shared_stats["stock_requests"] += len(stock)
        if groups:
            self._score_shared(requests, groups, results, disable_tqdm)
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _score_shared(self, requests: list[Request], groups: dict[tuple[int, ...], list[int]],
                      results: list[tuple[float, bool] | None], disable_tqdm: bool) -> None:
        """Fill ``results`` for the grouped requests: contexts longest first in chunks of
        ``batch_size``, each chunk's choice rows (longest continuation first) in passes of
        ``batch_size`` rows over the chunk's cache."""
        from tqdm.auto import tqdm

        batch = max(1, int(self.batch_size))
        contexts = sorted(groups, key=lambda c: (-len(c), c))
        total = sum(len(m) for m in groups.values())
        bar = tqdm(total=total, disable=disable_tqdm or self.rank != 0,
                   desc="loglikelihood (shared contexts)")
        for start in range(0, len(contexts), batch):
            chunk = contexts[start:start + batch]
            cache = self._prefill([list(c[:-1]) for c in chunk])
            rows = [(k, i) for k, c in enumerate(chunk) for i in groups[c]]
            rows.sort(key=lambda row: -len(requests[row[1]][2]))
            for first in range(0, len(rows), batch):
                part = rows[first:first + batch]
                answers = self._score_rows(cache, [chunk[k] for k, _ in part],
                                           [k for k, _ in part],
                                           [requests[i][2] for _, i in part])
                for (_, i), answer in zip(part, answers, strict=True):
                    results[i] = answer
                    key = requests[i][0]
                    self.cache_hook.add_partial("loglikelihood", key, answer)
                bar.update(len(part))
            self.shared_stats["contexts"] += len(chunk)
        self.shared_stats["shared_requests"] += total
        bar.close()

    def _forward(self, **inputs: Any) -> Any:
        """The model under HFLM's no-grad and autocast settings."""
        import torch

        with torch.no_grad(), torch.autocast(
            device_type=self.device.type, dtype=self.mixed_precision_dtype,
            enabled=self.mixed_precision_dtype is not None,
        ):
            return self.model(**inputs)

    def _prefill(self, prefixes: Sequence[list[int]]) -> list[tuple[Any, Any]]:
        """Per layer (keys, values) of the prefixes, right-padded: without an attention mask the
        causal window already keeps every real position off the padding after it, as in HFLM's
        own right-padded batches."""
        import torch
        from transformers.cache_utils import DynamicCache

        width = max(len(p) for p in prefixes)
        ids = torch.full((len(prefixes), width), self._pad_id(), dtype=torch.long)
        for row, prefix in enumerate(prefixes):
            ids[row, : len(prefix)] = torch.tensor(prefix, dtype=torch.long)
        cache = DynamicCache(config=self.model.config)
        extra = {"logits_to_keep": 1} if "logits_to_keep" in self._forward_params() else {}
        self._forward(input_ids=ids.to(self.device), use_cache=True,
                      **self._cache_arg(cache), **extra)
        self.shared_stats["forward_tokens"] += ids.numel()
        layers: list[Any] = list(cache.layers)
        return [(layer.keys, layer.values) for layer in layers]

    def _forward_params(self) -> frozenset[str]:
        """The model forward's parameter names: ``logits_to_keep`` spares the vocabulary
        projection of the prefill; transformers 5.24 renamed ``past_key_values`` ``cache``."""
        if not hasattr(self, "_params"):
            self._params = frozenset(inspect.signature(self.model.forward).parameters)
        return self._params

    def _cache_arg(self, cache: Any) -> dict[str, Any]:
        name = "cache" if "cache" in self._forward_params() else "past_key_values"
        return {name: cache}

    def _score_rows(self, cache: list[tuple[Any, Any]], contexts: list[tuple[int, ...]],
                    cache_rows: list[int], continuations: list[list[int]]
                    ) -> list[tuple[float, bool]]:
        """(log-likelihood, is greedy) of each continuation after its context, from one pass
        of rows ``[context[-1]] + continuation[:-1]`` over the context's cached prefix."""
        import torch
        import torch.nn.functional as F
        from transformers.cache_utils import DynamicCache

        n, prefix_width = len(contexts), int(cache[0][0].shape[2])
        width = max(len(c) for c in continuations)
        ids = torch.full((n, width), self._pad_id(), dtype=torch.long)
        mask = torch.zeros((n, prefix_width + width), dtype=torch.long)
        positions = torch.zeros((n, width), dtype=torch.long)
        for row, (context, cont) in enumerate(zip(contexts, continuations, strict=True)):
            tokens = [context[-1], *cont[:-1]]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(context) - 1] = 1  # the row's own prefix, not the chunk's padding
            mask[row, prefix_width:] = 1  # its own tokens (padding after them is never read)
            positions[row] = torch.arange(len(context) - 1, len(context) - 1 + width)
        index = torch.tensor(cache_rows, dtype=torch.long, device=cache[0][0].device)
        rows_cache = DynamicCache(ddp_cache_data=[
            (keys.index_select(0, index), values.index_select(0, index))
            for keys, values in cache])
        logits = self._forward(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device), use_cache=True, **self._cache_arg(rows_cache),
        ).logits
        self.shared_stats["forward_tokens"] += ids.numel()
        answers = []
        for row, cont in enumerate(continuations):
            logprobs = F.log_softmax(logits[row, : len(cont)], dim=-1, dtype=self.softmax_dtype)
            target = torch.tensor(cont, dtype=torch.long, device=logprobs.device)
            greedy = bool((logprobs.argmax(dim=-1) == target).all())
            picked = torch.gather(logprobs, 1, target.unsqueeze(-1)).squeeze(-1)
            answers.append((float(picked.sum()), greedy))
        return answers
