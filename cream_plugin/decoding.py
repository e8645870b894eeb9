"""A batched decode loop over a pre-allocated KV cache, shared by sampling and evaluation.

``generate`` with a ``DynamicCache`` concatenates every layer's keys and values at every step
(a copy of the whole cache per token) and keeps every row in the batch until the last one stops.
Here the cache of each layer is one buffer sized for prompt + new tokens, a step writes its
token's keys and values in place, and a row that has finished leaves the batch (and the cache)
at once, so the rows still running are the only ones paying for forwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

# Pick the next token of each running row from its last-position logits (rows, vocab).
ChooseTokens = Callable[[Any], Any]
# Which running rows are finished: (row indices into the batch, tokens so far, step) -> bool mask.
RowsFinished = Callable[[Any, Any, int], Any]
# Called with the positions (into the running rows) that stay after some rows finished.
RowsKept = Callable[[Any], None]


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in a buffer with room for ``capacity`` positions.

    ``keys``/``values`` are views of the filled part, so attention reads exactly what a
    ``DynamicLayer`` would hold; the buffer doubles if a caller writes past ``capacity``.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._keys: Any = None
        self._values: Any = None

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, dim = key_states.shape
        shape = (batch, heads, max(self.capacity, key_states.shape[-2]), dim)
        self._keys = key_states.new_empty(shape)
        self._values = value_states.new_empty((batch, heads, shape[2], value_states.shape[-1]))
        self.is_initialized = True

    def update(
        self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any
    ) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self._keys.shape[2]:
            self._grow(end)
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self.keys = self._keys[:, :, :end]
        self.values = self._values[:, :, :end]
        return self.keys, self.values

    def _grow(self, needed: int) -> None:
        import torch

        size = max(needed, 2 * self._keys.shape[2])
        pad = size - self._keys.shape[2]
        self._keys = torch.cat([self._keys, self._keys.new_empty(
            (*self._keys.shape[:2], pad, self._keys.shape[3]))], dim=2)
        self._values = torch.cat([self._values, self._values.new_empty(
            (*self._values.shape[:2], pad, self._values.shape[3]))], dim=2)

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: Any) -> None:
        """Keep the rows ``indices``: sorted drops compact in place, moving only the filled part
        of the rows after the first dropped one; any other selection gathers."""
        if not self.is_initialized:
            return
        kept = int(indices.numel())
        moved = indices != self._arange(kept, indices.device)
        if kept <= self._keys.shape[0] and bool((indices[1:] > indices[:-1]).all()):
            if bool(moved.any()):
                first = int(moved.nonzero()[0])
                span = slice(0, self.length)
                self._keys[first:kept, :, span] = self._keys[indices[first:], :, span]
                self._values[first:kept, :, span] = self._values[indices[first:], :, span]
            self._keys, self._values = self._keys[:kept], self._values[:kept]
        else:
            self._keys, self._values = self._keys[indices], self._values[indices]
        self.keys = self._keys[:, :, : self.length]
        self.values = self._values[:, :, : self.length]

    @staticmethod
    def _arange(n: int, device: Any) -> Any:
        import torch

        return torch.arange(n, device=device)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a pre-allocated decode cache is never cropped")


def make_cache(model: Any, capacity: int) -> Cache:
    """A pre-allocated cache when every layer is full attention, else transformers' own."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    config = config or model.config
    layer_types = getattr(config, "layer_types", None) or []
    plain = (
        not getattr(config, "sliding_window", None)
        and all(t == "full_attention" for t in layer_types)
        and getattr(config, "num_hidden_layers", None)
    )
    if not plain:
        return DynamicCache(config=model.config)
    return Cache(layers=[PreallocatedLayer(capacity) for _ in range(config.num_hidden_layers)])


def decode(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    *,
    max_new_tokens: int,
    choose: ChooseTokens,
    finished: RowsFinished,
    kept: RowsKept | None = None,
    row_source: Any = None,
) -> Any:
    """New tokens (rows, max_new_tokens) of a left-padded batch, -1 after a row's last token.

    One forward per step over the rows still running, logits for the last position only. A row
    leaves the batch right after the step at which ``finished`` says so (its finishing token is
    kept in the output); ``kept`` lets a caller drop its own per-row state alongside.
    ``row_source`` (a 1-D index into ``input_ids``) starts several rows from one prompt: each
    distinct prompt is run through the model once and its cache copied to its rows.
    """
    import torch

    rows = input_ids.shape[0] if row_source is None else int(row_source.numel())
    out = torch.full((rows, max_new_tokens), -1, dtype=torch.long)
    alive = torch.arange(rows)
    cache = make_cache(model, input_ids.shape[1] + max_new_tokens)
    mask = attention_mask
    positions = (mask.cumsum(dim=-1) - 1).clamp_min(0)
    inputs = input_ids
    with torch.inference_mode():
        for step in range(max_new_tokens):
            logits = model(
                input_ids=inputs,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :]
            if step == 0 and row_source is not None:
                source = row_source.to(mask.device)
                logits, mask, positions = logits[source], mask[source], positions[source]
                cache.batch_select_indices(source)
            tokens = choose(logits)
            out[alive, step] = tokens.cpu()
            done = finished(alive, out, step)
            positions = positions[:, -1:] + 1
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                alive, tokens = alive[keep.cpu()], tokens[keep.to(tokens.device)]
                keep = keep.to(mask.device)
                mask, positions = mask[keep], positions[keep]
                cache.batch_select_indices(keep)
                if kept is not None:
                    kept(keep)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            inputs = tokens[:, None]
    return out
