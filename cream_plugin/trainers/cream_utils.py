"""Pieces of :class:`~cream_plugin.trainers.cream_trainer.CREAMTrainer` that need no trainer: the
loss, the consistency and reference log-prob checks, the collator wrapper that carries the
``consistency`` column, and :class:`NonFiniteGuard`, which stops any ``transformers.Trainer`` at
the first NaN/inf loss or gradient."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from cream_plugin.errors import CreamError, DataError
from cream_plugin.plugins.interfaces import CONSISTENCY_COLUMN, REF_COLUMNS

CONSISTENCY_MODES = ("dynamic", "average", "none")


def cream_loss(h: torch.Tensor, consistency: torch.Tensor) -> torch.Tensor:
    """Per-pair CREAM loss (paper Eq. 3.7): ``C * -log s(h) + (1 - C) * -log s(-h)``.

    ``h = beta * (chosen log-ratio - rejected log-ratio)``. With C = 1 it is the DPO sigmoid loss;
    with C = 0 it is DPO on the swapped pair; C = 0.5 pushes h towards 0.
    """
    c = consistency.to(h.dtype)
    return c * -F.logsigmoid(h) + (1.0 - c) * -F.logsigmoid(-h)


def _row_label(row: Mapping[str, Any], index: int, dataset_name: str) -> str:
    """Names ``dataset[index]`` for a user: rows are numbered from 1 everywhere in cream (as
    line numbers: row k is line k of the JSON-lines file ``cream train`` reads)."""
    label = f"{dataset_name} row {index + 1}"
    if "prompt_id" in row and row["prompt_id"] is not None:
        label += f" (prompt_id {row['prompt_id']!r})"
    return label


def check_consistency_value(value: Any, label: str) -> float:
    """``value`` as a float in [0, 1]; else :class:`DataError` naming ``label``."""
    if value is None:
        raise DataError(f"{label}: missing '{CONSISTENCY_COLUMN}' value (need a float in [0, 1])")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(
            f"{label}: '{CONSISTENCY_COLUMN}' must be a float in [0, 1], got {value!r}"
        )
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise DataError(f"{label}: '{CONSISTENCY_COLUMN}' must be in [0, 1], got {value!r}")
    return value


def validate_consistency(dataset: Any, dataset_name: str) -> float:
    """Check every row's consistency before training starts and return the data set's mean C.

    Raises :class:`DataError` naming the first bad row (missing column, None, NaN, out of range).
    """
    columns = getattr(dataset, "column_names", None)
    if columns is not None and CONSISTENCY_COLUMN not in columns:
        raise DataError(
            f"{dataset_name}: no '{CONSISTENCY_COLUMN}' column (columns: {', '.join(columns)}); "
            "add a float in [0, 1] per pair, or set consistency_mode='none' for plain DPO"
        )
    if columns is not None:  # map-style: read the one column, look a row up only to name it
        values = list(dataset[CONSISTENCY_COLUMN])
    else:  # iterable: walk the rows once
        values = [row.get(CONSISTENCY_COLUMN) for row in dataset]
    total, count = 0.0, 0
    for index, value in enumerate(values):
        try:
            total += check_consistency_value(value, f"{dataset_name} row {index + 1}")
        except DataError:
            row = dataset[index] if columns is not None else {}
            check_consistency_value(value, _row_label(row, index, dataset_name))
        count += 1
    if count == 0:
        raise DataError(f"{dataset_name}: the data set is empty")
    return total / count


def has_ref_columns(dataset: Any) -> bool:
    """True when the data set carries both precomputed reference log-prob columns."""
    columns = getattr(dataset, "column_names", None) or []
    present = [c for c in REF_COLUMNS if c in columns]
    if len(present) == 1:
        raise DataError(
            f"only {present[0]!r} is present; precomputed reference log-probs need both "
            f"{REF_COLUMNS[0]!r} and {REF_COLUMNS[1]!r}"
        )
    return len(present) == 2


class ConsistencyCollator:
    """Wraps a preference collator so the batch also carries ``consistency`` as a float tensor.

    TRL's ``DataCollatorForPreference`` emits only token tensors and reference log-probs; this
    adds the per-pair C back (checked again here, for iterable data sets that were not checked
    up front). Rows without the column get C = 1 when ``required`` is False.
    """

    def __init__(self, inner: Callable[[list[dict[str, Any]]], dict[str, Any]],
                 required: bool = True) -> None:
        self.inner = inner
        self.required = required

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        values = []
        stripped = []
        for i, example in enumerate(examples):
            if CONSISTENCY_COLUMN in example or self.required:
                values.append(check_consistency_value(
                    example.get(CONSISTENCY_COLUMN), f"batch example {i}"))
            else:
                values.append(1.0)
            stripped.append({k: v for k, v in example.items() if k != CONSISTENCY_COLUMN})
        batch = self.inner(stripped)
        batch[CONSISTENCY_COLUMN] = torch.tensor(values, dtype=torch.float32)
        return batch

    def __getattr__(self, name: str) -> Any:
        # Expose the wrapped collator's settings (pad_token_id, max_length, ...).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def validate_ref_logps(dataset: Any, dataset_name: str) -> None:
    """Every precomputed reference log-prob must be a finite number (not None, NaN or inf).

    A NaN here makes every loss NaN and, through the gradients, every weight NaN; TRL would
    train on it without a word. Raises :class:`DataError` naming the row and the column.
    """
    columns = getattr(dataset, "column_names", None) or []
    for column in REF_COLUMNS:
        if column not in columns:
            continue
        for index, value in enumerate(dataset[column]):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                label = _row_label(dataset[index], index, dataset_name)
                raise DataError(f"{label}: {column!r} must be a finite number, got {value!r}")


class NonFiniteError(CreamError, FloatingPointError):
    """Training produced a NaN or infinite loss or gradient norm; nothing was saved."""


class NonFiniteGuard(TrainerCallback):
    """Stops training at the first non-finite loss or gradient norm, before the weights change.

    The loss of every micro-batch is checked (through a wrapper of the trainer's
    ``training_step`` that :meth:`attach` installs) and the norm of the gradients right before
    each optimizer step (``on_pre_optimizer_step``), so the optimizer never applies a NaN/inf
    update and the exception propagates out of ``trainer.train()`` before anything is saved.
    The error names ``stage`` (e.g. "M2 (cream)") or the trainer class, and the step.

    Every trainer the project builds (CREAMTrainer, SCIRTrainer, the SFT trainer) attaches one;
    for any other ``transformers.Trainer`` call ``NonFiniteGuard.attach(trainer, stage=...)``.
    Across processes the verdict is all-reduced, so every rank stops at the same step.
    """

    def __init__(self, stage: str | None = None) -> None:
        self.stage = stage
        self.trainer_name = "Trainer"
        self._bad_loss: tuple[int, float] | None = None

    @classmethod
    def attach(cls, trainer: Any, stage: str | None = None) -> NonFiniteGuard:
        """Add a guard to ``trainer`` (once; a second call only updates ``stage``)."""
        existing = getattr(trainer, "nonfinite_guard", None)
        if isinstance(existing, cls):
            if stage is not None:
                existing.stage = stage
            return existing
        guard = cls(stage)
        guard.trainer_name = type(trainer).__name__
        trainer.add_callback(guard)
        step = trainer.training_step

        def training_step(*args: Any, **kwargs: Any) -> Any:
            loss = step(*args, **kwargs)
            guard.check_loss(loss, trainer.state.global_step + 1)
            return loss

        trainer.training_step = training_step
        trainer.nonfinite_guard = guard
        return guard

    def _where(self, step: int, total: int | None = None) -> str:
        name = f"{self.stage} ({self.trainer_name})" if self.stage else self.trainer_name
        of = f" of {total}" if total else ""
        return f"training {name}: step {step}{of}"

    def check_loss(self, loss: Any, step: int) -> None:
        """Remember the first micro-batch loss that is NaN or infinite (raised before the step)."""
        value = float(loss.detach().float().sum()) if hasattr(loss, "detach") else float(loss)
        if not math.isfinite(value) and self._bad_loss is None:
            self._bad_loss = (step, value)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs.get("model")
        step = state.global_step + 1
        norm = _grad_norm(model) if model is not None else 0.0
        bad_loss = self._bad_loss is not None
        bad = _any_rank(bad_loss or not math.isfinite(norm), getattr(args, "device", None))
        if not bad:
            return
        where = self._where(step, state.max_steps)
        hint = ("lower the learning rate, or check the data's reference log-probs and "
                "consistency values; nothing was saved")
        if self._bad_loss is not None:
            raise NonFiniteError(f"{where}: the loss is {self._bad_loss[1]}; {hint}")
        if not math.isfinite(norm):
            raise NonFiniteError(f"{where}: the gradient norm is {norm}; {hint}")
        raise NonFiniteError(f"{where}: another process saw a non-finite loss or gradient; {hint}")

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._bad_loss = None


def _grad_norm(model: Any) -> float:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    norms = torch._foreach_norm(grads)  # one fused pass over the gradients
    return float(torch.linalg.vector_norm(torch.stack([n.float().cpu() for n in norms])))


def _any_rank(flag: bool, device: Any) -> bool:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
