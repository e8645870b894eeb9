"""lm-eval's HFLM with greedy generation on cream's decode loop: the same text, less waiting.

Stock ``HFLM._model_generate`` calls ``generate`` with lm-eval's stop criterion, which ends the
batch only when *every* row has produced the *same* stop string, so a batch of 16 GSM8K rows
often runs to ``max_gen_toks`` when most rows stopped long before; the ``DynamicCache`` copies
itself at every step; and every context is padded to the longest of its batch. Here
``generate_until`` sends all greedy requests of one generation setting through one
continuous-batching stream (``decoding.decode_stream``): each row leaves as soon as its text
contains one of the stop strings (or it emits an EOS id), new rows join when half the batch has
left, contexts are prefilled without padding, and the cache is pre-allocated. lm-eval truncates
every generation at its first stop string anyway, so the strings returned are those of greedy
``generate``. Anything the loop does not reproduce exactly (sampling, extra generation kwargs,
logits processors from the model's generation config, autocast, thinking tokens, ``auto``
batch size) goes to the stock path."""

from __future__ import annotations

from typing import Any

from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import (
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)

# Generation-config fields that change greedy logits: the fast path needs them unset or neutral.
_NEUTRAL_GENERATION = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "min_length": 0,
    "min_new_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "num_beams": 1,
    "exponential_decay_length_penalty": None,
    "guidance_scale": None,
}
# Keys of lm-eval's normalised greedy kwargs that the fast path understands.
_GREEDY_KEYS = {"do_sample", "temperature", "attention_mask"}


class DecodeLoopHFLM(HFLM):
    """HFLM whose greedy ``generate_until`` runs on ``cream_plugin.forward.decoding.decode_stream``
    (or, where only HFLM's batches fit, ``decoding.decode`` per batch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.decode_stats = {"fast_batches": 0, "stock_batches": 0, "new_tokens": 0}

    def fast_path_reason(self, generation_kwargs: dict[str, Any]) -> str | None:
        """Why a batch must take the stock path, or None when the decode loop reproduces it."""
        extra = set(generation_kwargs) - _GREEDY_KEYS
        if extra:
            return f"generation kwargs {sorted(extra)}"
        if generation_kwargs.get("do_sample") or generation_kwargs.get("temperature", 0.0):
            return "sampling"
        if self.mixed_precision_dtype is not None:
            return "autocast"
        if self.backend != "causal":
            return "not a causal LM"
        if self.think_end_token is not None:
            return "think_end_token (stop strings inside the thinking trace do not stop stock)"
        config = self.model.generation_config
        for name, neutral in _NEUTRAL_GENERATION.items():
            value = getattr(config, name, None)  # transformers 5 leaves unset fields None
            if value is not None and value not in (neutral, [], {}):
                return f"generation_config.{name}"
        return None

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """All greedy requests of a generation setting in one continuous-batching stream
        (``decoding.decode_stream``); anything else through HFLM's batches."""
        import json

        from tqdm.auto import tqdm

        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            key = json.dumps(request.args[1], sort_keys=True, default=str)
            groups.setdefault(key, []).append(i)
        plans = [self._stream_plan(requests[idx[0]].args[1]) for idx in groups.values()]
        if not isinstance(self.batch_size, int) or any(plan is None for plan in plans):
            return list(super().generate_until(requests, disable_tqdm=disable_tqdm))
        results: list[str] = [""] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0,
                   desc="generate_until (decode loop)")
        for indices, plan in zip(groups.values(), plans, strict=True):
            assert plan is not None
            out = self._stream(requests, indices, *plan, bar)
            if out is None:  # the model's cache cannot be pre-allocated
                bar.close()
                return list(super().generate_until(requests, disable_tqdm=disable_tqdm))
            for i, text in zip(indices, out, strict=True):
                results[i] = text
        bar.close()
        return results

    def _stream_plan(self, gen_kwargs: Any) -> tuple[list[str], int] | None:
        """(stop strings, max new tokens) when the stream reproduces these kwargs, else None."""
        if not isinstance(gen_kwargs, dict):
            return None
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_gen_toks = int(kwargs.pop("max_gen_toks"))
        if "max_length" in kwargs or self.fast_path_reason(kwargs) is not None:
            return None
        return until, max_gen_toks

    def _stream(self, requests: list[Any], indices: list[int], until: list[str],
                max_gen_toks: int, bar: Any) -> list[str] | None:
        import torch

        from cream_plugin.forward.decoding import decode_stream

        contexts = [requests[i].args[0] for i in indices]
        max_ctx_len = self.max_length - max_gen_toks
        encoded = [self.tok_batch_encode([c], left_truncate_len=max_ctx_len,
                                         truncation=self.truncation)[0][0].tolist()
                   for c in contexts]
        order = sorted(range(len(contexts)), key=lambda k: (-len(encoded[k]), contexts[k]))
        stopped = self._stop_rule(until)

        def finished(alive: list[int], tokens: list[list[int]]) -> Any:
            return torch.tensor([stopped(tokens[row]) for row in alive], dtype=torch.bool)

        out = decode_stream(
            self.model, [encoded[k] for k in order], max_new_tokens=max_gen_toks,
            batch_size=int(self.batch_size), choose=lambda logits: logits.argmax(dim=-1),
            finished=finished, pad_id=self._pad_id(), on_done=lambda _: bar.update(1),
        )
        if out is None:
            return None
        self.decode_stats["stream_rows"] = self.decode_stats.get("stream_rows", 0) + len(out)
        self.decode_stats["new_tokens"] += sum(len(t) for t in out)
        texts: list[str] = [""] * len(contexts)
        for k, tokens in zip(order, out, strict=True):
            text = postprocess_generated_text(self.tok_decode(tokens), until, None)
            texts[k] = text
            gen_kwargs = requests[indices[k]].args[1]
            self.cache_hook.add_partial("generate_until", (contexts[k], gen_kwargs), text)
        return texts

    def _stop_rule(self, until: list[str]) -> Any:
        """Whether a row whose new tokens are ``tokens`` is finished: it ends in an EOS id of the
        model's generation config (as ``generate`` stops), or its text, special tokens kept as
        lm-eval's stop criterion decodes them, contains one of the ``until`` strings."""
        value = self.model.generation_config.eos_token_id
        eos = set() if value is None else set(value) if isinstance(value, list) else {int(value)}
        tokenizer = self.tokenizer

        def stopped(tokens: list[int]) -> bool:
            if tokens[-1] in eos:
                return True
            return bool(until) and any(stop in tokenizer.decode(tokens) for stop in until)

        return stopped

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    def _model_generate(
        self, context: Any, max_length: int, stop: list[str], **generation_kwargs: Any
    ) -> Any:
        if self.fast_path_reason(generation_kwargs) is not None:
            self.decode_stats["stock_batches"] += 1
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        import torch

        from cream_plugin.forward.decoding import decode

        mask = generation_kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(context)
        stopped = self._stop_rule(stop)

        def finished(alive: Any, out: Any, step: int) -> Any:
            rows = out[alive, : step + 1].tolist()
            return torch.tensor([stopped(tokens) for tokens in rows], dtype=torch.bool)

        new = decode(
            self.model, context, mask, max_new_tokens=max(1, max_length - context.shape[1]),
            choose=lambda logits: logits.argmax(dim=-1), finished=finished,
        )
        steps = int((new >= 0).sum(dim=0).nonzero().numel())
        new = new[:, :steps]
        self.decode_stats["fast_batches"] += 1
        self.decode_stats["new_tokens"] += int((new >= 0).sum())
        new = new.masked_fill(new < 0, self._pad_id()).to(context.device)
        return torch.cat([context, new], dim=1)
