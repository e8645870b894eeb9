"""``SCIRConfig``: ``CREAMConfig`` plus every choice the SCIR paper leaves open (beside
``SCIRTrainer`` in :mod:`cream_plugin.trainers.scir_trainer`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cream_plugin.errors import ConfigError
from cream_plugin.rewarders.pairwise_judge import DEFAULT_LABELS
from cream_plugin.trainers.cream_config import CREAMConfig
from cream_plugin.trainers.scir_losses import CONSISTENCY_LOSSES, SELECTIONS

CONSISTENCY_GRADS = ("both", "dpo", "gen")

@dataclass
class SCIRConfig(CREAMConfig):
    """``DPOConfig`` plus SCIR's loss weights, selection rule and pair-judge settings."""

    consistency_mode: str = field(
        default="none",
        metadata={"help": "Inherited from CREAMConfig; SCIR ignores any 'consistency' column, so "
                  "only 'none' is accepted."},
    )
    dpo_weight: float = field(
        default=1.0, metadata={"help": "Weight of the DPO loss on the selected pairs."})
    consistency_weight: float = field(
        default=1.0, metadata={"help": "Weight of the consistency loss L_cons (all pairs)."})
    confidence_weight: float = field(
        default=0.1,
        metadata={"help": "Inside L_cons: weight of the binary entropy of mean(P_dpo, P_gen)."})
    consistency_loss: str = field(
        default="sym_kl",
        metadata={"help": "Distance between P_dpo and P_gen: 'sym_kl' or 'mse'.",
                  "choices": list(CONSISTENCY_LOSSES)})
    consistency_grad: str = field(
        default="both",
        metadata={"help": "Which reward path L_cons trains: 'both', 'dpo' (P_gen detached) or "
                  "'gen' (P_dpo detached).", "choices": list(CONSISTENCY_GRADS)})
    selection: str = field(
        default="agree",
        metadata={"help": "Pairs DPO trains on: 'agree' (both on one side; that side is the "
                  "label), 'chosen' (both prefer the chosen response) or 'all'.",
                  "choices": list(SELECTIONS)})
    confidence_threshold: float = field(
        default=0.5,
        metadata={"help": "Selected pairs also need max(m, 1-m) >= this, m = mean of P_dpo and "
                  "P_gen; in [0.5, 1)."})
    side_margin: float = field(
        default=1e-4,
        metadata={"help": "A probability within this of 0.5 is on neither side (not selected). "
                  "Not 0: at an iteration's first step P_dpo is a tie up to float noise (the "
                  "precomputed reference and the training forward use different kernels)."})
    judge_labels: list[str] = field(
        default_factory=lambda: list(DEFAULT_LABELS),
        metadata={"help": "The two verdict labels of the pair judge (single tokens)."})
    judge_max_response_tokens: int | None = field(
        default=512,
        metadata={"help": "Cut each response to this many tokens inside the judge prompt."})
    judge_answer_prefix: str = field(
        default="", metadata={"help": "Text appended after the assistant header of the judge "
                              "prompt, before the verdict token."})
    judge_batch_size: int | None = field(
        default=None,
        metadata={"help": "Judge sequences per forward in a training step (None: all 2n at once)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_scir(self)


def check_scir(args: Any) -> None:
    """Raise :class:`ConfigError` for SCIR settings outside their range."""
    if getattr(args, "consistency_mode", "none") != "none":
        raise ConfigError("consistency_mode: SCIR ignores the 'consistency' column; leave it "
                          "'none' (use trainer 'cream' for consistency-weighted DPO)")
    if args.consistency_loss not in CONSISTENCY_LOSSES:
        raise ConfigError(f"consistency_loss: {args.consistency_loss!r} is not one of "
                          f"{', '.join(CONSISTENCY_LOSSES)}")
    if args.consistency_grad not in CONSISTENCY_GRADS:
        raise ConfigError(f"consistency_grad: {args.consistency_grad!r} is not one of "
                          f"{', '.join(CONSISTENCY_GRADS)}")
    if args.selection not in SELECTIONS:
        raise ConfigError(f"selection: {args.selection!r} is not one of {', '.join(SELECTIONS)}")
    if not 0.5 <= args.confidence_threshold < 1.0:
        raise ConfigError(f"confidence_threshold: must be in [0.5, 1), got "
                          f"{args.confidence_threshold}")
    if not 0.0 <= args.side_margin < 0.5:
        raise ConfigError(f"side_margin: must be in [0, 0.5), got {args.side_margin}")
    for name in ("dpo_weight", "consistency_weight", "confidence_weight"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name}: must be a finite number >= 0, got {value}")
    if len(args.judge_labels) != 2:
        raise ConfigError(f"judge_labels: need two labels, got {args.judge_labels!r}")
    for name in ("judge_max_response_tokens", "judge_batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"{name}: must be >= 1 or None, got {value}")


# -- the trainer ----------------------------------------------------------------------------------
