"""lm-eval's HFLM with greedy generation on cream's decode loop: the same text, less waiting.

Stock ``HFLM._model_generate`` calls ``generate`` with lm-eval's stop criterion, which ends the
batch only when *every* row has produced the *same* stop string, so a batch of 16 GSM8K rows
usually runs to ``max_gen_toks`` even when most rows stopped long before; and the
``DynamicCache`` copies itself at every step. Here each row leaves the batch as soon as its
text contains one of the stop strings (or it emits an EOS id), and the cache is pre-allocated.
lm-eval truncates every generation at its first stop string anyway, so the strings returned
are those of greedy ``generate``. Anything this loop does not reproduce exactly (sampling,
extra generation kwargs, logits processors from the model's generation config, autocast)
goes to the stock path.
"""

from __future__ import annotations

from typing import Any

from lm_eval.models.huggingface import HFLM

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
    """HFLM whose greedy ``generate_until`` batches run on ``cream_plugin.decoding.decode``."""

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
        config = self.model.generation_config
        for name, neutral in _NEUTRAL_GENERATION.items():
            value = getattr(config, name, None)  # transformers 5 leaves unset fields None
            if value is not None and value not in (neutral, [], {}):
                return f"generation_config.{name}"
        return None

    def _eos_ids(self) -> set[int]:
        value = self.model.generation_config.eos_token_id
        if value is None:
            return set()
        return set(value) if isinstance(value, list) else {int(value)}

    def _model_generate(
        self, context: Any, max_length: int, stop: list[str], **generation_kwargs: Any
    ) -> Any:
        if self.fast_path_reason(generation_kwargs) is not None:
            self.decode_stats["stock_batches"] += 1
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        import torch

        from cream_plugin.decoding import decode

        mask = generation_kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(context)
        eos = torch.tensor(sorted(self._eos_ids()), dtype=torch.long)
        tokenizer = self.tokenizer

        def finished(alive: Any, out: Any, step: int) -> Any:
            # The criterion lm-eval applies, per row: a stop string in the text decoded so far
            # (special tokens kept, as its criterion decodes them), or an EOS id as generate does.
            done = torch.isin(out[alive, step], eos)
            for r, row in enumerate(alive.tolist()):
                if not done[r] and stop:
                    text = tokenizer.decode(out[row, : step + 1].tolist())
                    done[r] = any(s in text for s in stop)
            return done

        new = decode(
            self.model, context, mask, max_new_tokens=max(1, max_length - context.shape[1]),
            choose=lambda logits: logits.argmax(dim=-1), finished=finished,
        )
        steps = int((new >= 0).sum(dim=0).nonzero().numel())
        new = new[:, :steps]
        self.decode_stats["fast_batches"] += 1
        self.decode_stats["new_tokens"] += int((new >= 0).sum())
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        new = new.masked_fill(new < 0, pad).to(context.device)
        return torch.cat([context, new], dim=1)
