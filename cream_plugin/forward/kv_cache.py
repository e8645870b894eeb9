"""A KV cache whose layers are one pre-allocated buffer each, for cream's decode loop.

``DynamicCache`` concatenates every layer's keys and values at every step (a copy of the whole
cache per token). Here each layer is one buffer sized for prompt + new tokens; a step writes in
place, finished rows are compacted out and padding columns every row shares are trimmed.
"""

from __future__ import annotations

from typing import Any

from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in a buffer with room for ``capacity`` positions.

    ``keys``/``values`` are views of the window ``[start, length)`` of the buffer, so attention
    reads exactly what a ``DynamicLayer`` would hold; the buffer grows if a caller writes past
    its end. ``start`` moves forward when every row's left padding covers the first columns
    (``trim_front``), so a long stream of rows does not drag dead columns along.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.start = 0
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

    def _views(self) -> None:
        self.keys = self._keys[:, :, self.start : self.length]
        self.values = self._values[:, :, self.start : self.length]

    def update(
        self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any
    ) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.length + key_states.shape[-2] > self._keys.shape[2]:
            self._rebuffer(front=0, room=key_states.shape[-2])
        end = self.length + key_states.shape[-2]
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def _rebuffer(self, front: int, room: int) -> None:
        """Copy the window to a new buffer after ``front`` zero columns, with space for at least
        ``room`` more columns (doubling, so growth is amortised)."""
        window = self.length - self.start
        size = max(front + window + room, 2 * (front + window))
        keys = self._keys.new_zeros((*self._keys.shape[:2], size, self._keys.shape[3]))
        values = self._values.new_zeros((*self._values.shape[:2], size, self._values.shape[3]))
        keys[:, :, front : front + window] = self._keys[:, :, self.start : self.length]
        values[:, :, front : front + window] = self._values[:, :, self.start : self.length]
        self._keys, self._values = keys, values
        self.start, self.length = 0, front + window
        self._views()

    def get_seq_length(self) -> int:
        return self.length - self.start

    def write_rows(self, rows: Any, keys: Any, values: Any, end: int, batch: int) -> None:
        """Place a separately prefilled group of rows right-aligned to position ``end``.

        The buffer starts zeroed: a row's left padding is masked, but must not hold NaN.
        """
        if not self.is_initialized:
            self.capacity = max(self.capacity, end)
            self.dtype, self.device = keys.dtype, keys.device
            self._keys = keys.new_zeros((batch, keys.shape[1], self.capacity, keys.shape[3]))
            self._values = values.new_zeros(
                (batch, values.shape[1], self.capacity, values.shape[3]))
            self.is_initialized = True
        self._keys[rows, :, end - keys.shape[2] : end] = keys
        self._values[rows, :, end - values.shape[2] : end] = values
        self.start, self.length = 0, end
        self._views()

    def trim_front(self, columns: int) -> None:
        """Drop the first ``columns`` of the window (every row must have them masked)."""
        self.start += columns
        self._views()

    def join_rows(self, keys: Any, values: Any, room: int) -> int:
        """Add rows prefilled on their own (``keys``: rows, heads, width, dim); both the old and
        the new rows end up right-aligned in a window as wide as the wider of the two, in one
        new buffer with ``room`` free columns after it. Returns the window's width."""
        window, width = self.length - self.start, keys.shape[2]
        wide = max(window, width)
        rows = self._keys.shape[0] + keys.shape[0]

        def joined(old: Any, new: Any) -> Any:
            buffer = old.new_empty((rows, old.shape[1], wide + room, old.shape[3]))
            buffer[:, :, :wide] = 0
            buffer[: old.shape[0], :, wide - window : wide] = old[:, :, self.start : self.length]
            buffer[old.shape[0] :, :, wide - width : wide] = new
            return buffer

        self._keys, self._values = joined(self._keys, keys), joined(self._values, values)
        self.start, self.length = 0, wide
        self._views()
        return wide

    def batch_select_indices(self, indices: Any) -> None:
        """Keep the rows ``indices``: sorted drops compact in place, moving only the window
        of the rows after the first dropped one; any other selection gathers."""
        if not self.is_initialized:
            return
        import torch

        kept = int(indices.numel())
        moved = indices != torch.arange(kept, device=indices.device)
        if kept <= self._keys.shape[0] and bool((indices[1:] > indices[:-1]).all()):
            if bool(moved.any()):
                first = int(moved.nonzero()[0])
                span = slice(self.start, self.length)
                self._keys[first:kept, :, span] = self._keys[indices[first:], :, span]
                self._values[first:kept, :, span] = self._values[indices[first:], :, span]
            self._keys, self._values = self._keys[:kept], self._values[:kept]
        else:
            self._keys, self._values = self._keys[indices], self._values[indices]
        self._views()

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
