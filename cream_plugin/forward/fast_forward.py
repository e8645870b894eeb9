"""Padding-free rows and a completion-only LM head for TRL's fused-head forward, on any device.

TRL 1.16 patches a model's forward (``trl.trainer.utils.add_fused_lm_head``) so that
``model(..., labels=..., fused_lm_head=True)`` returns per-token log-probs; DPOTrainer (so
CREAMTrainer and SCIRTrainer) and SFTTrainer train through it. Two costs remain off CUDA, and
:func:`install_fast_forward` removes both without changing any per-token value beyond float
rounding (the per-token outputs are unpacked back to the padded layout, so every loss and metric
sees the tensors it saw before):

* padding (``padding_free``): a right-padded batch runs ``n x longest`` positions through every
  layer. The sequences are packed into as few rows as fit in that same width (first-fit
  decreasing), each with ``position_ids`` from 0, and no attention mask is passed, so
  transformers' mask builder makes attention block-diagonal (``find_packed_sequence_indices``):
  each token sees the keys and positions it saw in the padded batch. Rows are never wider than
  the padded batch, so attention never costs more, unlike TRL's single-row padding-free layout,
  whose dense attention on CPU grows with the square of the whole batch's length. (TRL 1.16's
  DPOTrainer disables its own ``padding_free``.) The first packed call is checked against the
  padded forward; a model whose attention ignores the packed ``position_ids`` is caught there
  and trains padded, with a warning. A DPOTrainer's batch (chosen rows, then rejected rows)
  goes further where the model takes a 4-D mask: each pair becomes a prefix tree, its shared
  prompt once and the two completions as branches
  (:func:`cream_plugin.forward.prefix_tree.pack_pair_trees`).
* the LM head (``compact_lm_head``): off Triton devices TRL projects every position, prompt and
  padding included, through the vocabulary (it keeps tile shapes fixed for compilers); here only
  the positions with a label are projected, as TRL does on CUDA.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Any

import torch

from cream_plugin.forward.packing import pack_batch, right_padded_lengths
from cream_plugin.forward.prefix_tree import pack_pair_trees, takes_tree_mask

log = logging.getLogger(__name__)

PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1",
                    "label_mask")
_PACKABLE_KWARGS = frozenset({"input_ids", "attention_mask", "labels", "use_cache",
                              "num_items_in_batch"})
# Largest mean |packed - padded| per-token log-prob difference accepted by the first-call check.
_CHECK_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}
_HALF_TOLERANCE = 5e-2


@contextlib.contextmanager
def compact_lm_head() -> Iterator[None]:
    """Make TRL's fused head project only the labelled positions, as it does on CUDA.

    TRL 1.16 decides per call with ``trl.trainer.utils._use_triton(device)``; the per-position
    arithmetic is the same either way (``_ChunkedLogProbFunction`` on the selected rows).
    """
    from trl.trainer import utils as trl_utils

    original = trl_utils._use_triton
    trl_utils._use_triton = _always
    try:
        yield
    finally:
        trl_utils._use_triton = original


def _always(device: torch.device) -> bool:
    return True


class FastForward:
    """The wrapper :func:`install_fast_forward` puts around a fused-head model's forward."""

    def __init__(self, inner: Any, padding_free: bool, compact: bool, pad_id: int,
                 pair_trees: bool = False) -> None:
        self.inner = inner
        self.padding_free = padding_free
        self.pair_trees = pair_trees
        self.compact = compact
        self.pad_id = pad_id
        self.checked = False
        self.packed_calls = 0

    def __call__(self, *args: Any, fused_lm_head: bool = False, **kwargs: Any) -> Any:
        if not fused_lm_head:
            return self.inner(*args, **kwargs)
        head = compact_lm_head() if self.compact else contextlib.nullcontext()
        with head:
            lengths = self._packable(args, kwargs)
            if lengths is None:
                return self.inner(*args, fused_lm_head=True, **kwargs)
            if not self.checked:
                self.checked = True
                if not self._packing_matches(kwargs, lengths):
                    self.padding_free = False
                    return self.inner(fused_lm_head=True, **kwargs)
            return self._packed(kwargs, lengths)

    def _packable(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[int] | None:
        if not self.padding_free or args or not set(kwargs) <= _PACKABLE_KWARGS:
            return None
        ids, mask, labels = (kwargs.get(k) for k in ("input_ids", "attention_mask", "labels"))
        if ids is None or mask is None or labels is None or ids.dim() != 2:
            return None
        return right_padded_lengths(mask)

    def _packed(self, kwargs: dict[str, Any], lengths: list[int]) -> Any:
        if self.pair_trees and len(lengths) % 2 == 0:

            packed = pack_pair_trees(kwargs["input_ids"], lengths, kwargs["labels"], self.pad_id)
        else:
            packed = pack_batch(kwargs["input_ids"], lengths, kwargs["labels"], self.pad_id)
        rest = {k: v for k, v in kwargs.items()
                if k not in ("input_ids", "attention_mask", "labels")}
        if packed.attention_mask is not None:
            rest["attention_mask"] = packed.attention_mask
        outputs = self.inner(input_ids=packed.input_ids, position_ids=packed.position_ids,
                             labels=packed.labels, fused_lm_head=True, **rest)
        for name in PER_TOKEN_FIELDS:
            value = getattr(outputs, name, None)
            if value is not None:
                setattr(outputs, name, packed.unpack(value))
        self.packed_calls += 1
        return outputs

    def _packing_matches(self, kwargs: dict[str, Any], lengths: list[int]) -> bool:
        """Compare the first packed forward with the padded one (no gradient)."""
        with torch.no_grad():
            padded = self.inner(fused_lm_head=True, **kwargs).log_probs
            packed = self._packed(kwargs, lengths).log_probs
        self.packed_calls -= 1
        mask = kwargs["labels"][:, 1:] != -100
        diff = (packed - padded).abs()[mask]
        error = float(diff.mean()) if diff.numel() else 0.0
        tolerance = _CHECK_TOLERANCE.get(padded.dtype, _HALF_TOLERANCE)
        if error > tolerance:
            log.warning("padding_free: packed rows change this model's log-probs (mean |diff| "
                        "%.3g > %.3g; its attention ignores packed position_ids?); training "
                        "on padded batches", error, tolerance)
            return False
        log.info("padding_free: packed log-probs match padded (mean |diff| %.3g)", error)
        return True


def install_fast_forward(model: Any, *, padding_free: bool, compact_lm_head: bool,
                         pad_id: int | None = None, pair_trees: bool = False
                         ) -> FastForward | None:
    """Wrap ``model.forward`` (already given TRL's fused head) with packed rows and/or a
    completion-only head; calling it again updates the settings. ``pair_trees``: the batches are
    DPO pairs (chosen rows, then rejected rows), and each pair's shared prompt runs once
    (:func:`cream_plugin.forward.prefix_tree.pack_pair_trees`; the model must take a tree mask).
    Returns the wrapper, or None when all are off (an existing wrapper is then switched off)."""
    current = model.forward
    if isinstance(current, FastForward):
        current.padding_free, current.compact = padding_free, compact_lm_head
        current.pair_trees = pair_trees
        return current if (padding_free or compact_lm_head) else None
    if not (padding_free or compact_lm_head):
        return None
    if pad_id is None:
        pad_id = getattr(model.config.get_text_config(), "pad_token_id", None) or 0
    fast = FastForward(current, padding_free, compact_lm_head, int(pad_id), pair_trees)
    functools.update_wrapper(fast, current)  # keeps the signature that generate() checks
    model.forward = fast
    return fast


def _policy(trainer: Any) -> Any:
    """A TRL trainer's policy as TRL patched it: unwrapped, its base model under PEFT."""
    policy = trainer.accelerator.unwrap_model(trainer.model)
    return policy.get_base_model() if hasattr(policy, "get_base_model") else policy


def trains_padding_free(trainer: Any) -> bool:
    """Whether the trainer's policy runs packed rows, checked on its first batch: other forwards
    of the same step (SCIR's judge rows) may then be packed too."""
    forward = getattr(_policy(trainer), "forward", None)
    return isinstance(forward, FastForward) and forward.padding_free and forward.checked


def install_on_trainer(trainer: Any, *, padding_free: bool, compact_lm_head: bool) -> None:
    """:func:`install_fast_forward` on a TRL trainer's policy (its base model under PEFT, where
    TRL put the fused head) and reference model, if any; idempotent. A DPOTrainer's packed
    batches also run each pair's prompt once, where the model takes a tree mask."""
    from trl import DPOTrainer


    models = [_policy(trainer)]
    if getattr(trainer, "ref_model", None) is not None:
        models.append(trainer.accelerator.unwrap_model(trainer.ref_model))
    pairs = padding_free and isinstance(trainer, DPOTrainer)
    for model in models:
        install_fast_forward(model, padding_free=padding_free, compact_lm_head=compact_lm_head,
                             pair_trees=pairs and takes_tree_mask(model))
