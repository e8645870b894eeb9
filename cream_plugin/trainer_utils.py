"""Pieces of :class:`~cream_plugin.trainer.CREAMTrainer` that need no trainer: the loss, the
consistency checks and the collator wrapper that carries the ``consistency`` column."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from cream_plugin.errors import DataError

CONSISTENCY_COLUMN = "consistency"
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
CONSISTENCY_MODES = ("dynamic", "average", "none")


def cream_loss(h: torch.Tensor, consistency: torch.Tensor) -> torch.Tensor:
    """Per-pair CREAM loss (paper Eq. 3.7): ``C * -log s(h) + (1 - C) * -log s(-h)``.

    ``h = beta * (chosen log-ratio - rejected log-ratio)``. With C = 1 it is the DPO sigmoid loss;
    with C = 0 it is DPO on the swapped pair; C = 0.5 pushes h towards 0.
    """
    c = consistency.to(h.dtype)
    return c * -F.logsigmoid(h) + (1.0 - c) * -F.logsigmoid(-h)


def _row_label(row: Mapping[str, Any], index: int, dataset_name: str) -> str:
    label = f"{dataset_name} row {index}"
    if "prompt_id" in row and row["prompt_id"] is not None:
        label += f" (prompt_id={row['prompt_id']!r})"
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
            total += check_consistency_value(value, f"{dataset_name} row {index}")
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
