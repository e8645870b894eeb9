"""``CREAMConfig``: TRL's ``DPOConfig`` plus how CREAM weighs each preference label (beside
``CREAMTrainer`` in :mod:`cream_plugin.trainers.cream_trainer`, as TRL keeps ``DPOConfig`` beside
``DPOTrainer``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import DPOConfig

from cream_plugin.errors import ConfigError
from cream_plugin.trainers.cream_utils import CONSISTENCY_MODES


@dataclass
class CREAMConfig(DPOConfig):
    """``DPOConfig`` plus how CREAM weighs each preference label."""

    consistency_mode: str = field(
        default="dynamic",
        metadata={
            "help": "How the consistency C weighs each pair: 'dynamic' (the pair's own C), "
            "'average' (the training set's mean C) or 'none' (plain DPO, C = 1).",
            "choices": list(CONSISTENCY_MODES),
        },
    )
    padding_free: bool = field(default=False, metadata={
        "help": "Pack each batch's sequences into unpadded rows (cream_plugin.forward.packing): "
        "the same loss within float rounding. TRL 1.16's DPOTrainer ignores this flag."})
    compact_lm_head: bool = field(default=True, metadata={
        "help": "Project only completion positions through the LM head (TRL: on CUDA only)."})
    reference_from_policy: bool = field(
        default=True,
        metadata={
            "help": "With no reference columns, no ref_model and no PEFT, use a frozen copy of "
            "the policy as passed in as the reference. False raises an error instead."
        },
    )

    def __post_init__(self) -> None:
        # The plugin's own checks first: TRL's device checks (bf16 on a CPU-only machine) would
        # otherwise hide a misspelt consistency_mode until the device error is fixed.
        check_supported(self)
        super().__post_init__()


def check_supported(args: Any) -> None:
    """Raise :class:`ConfigError` for DPO options that Eq. 3.7 does not define."""
    mode = getattr(args, "consistency_mode", "dynamic")
    if mode not in CONSISTENCY_MODES:
        raise ConfigError(
            f"consistency_mode: {mode!r} is not one of {', '.join(CONSISTENCY_MODES)}"
        )
    loss_type = args.loss_type if isinstance(args.loss_type, list) else [args.loss_type]
    if loss_type != ["sigmoid"]:
        raise ConfigError(f"loss_type: CREAM weighs the sigmoid DPO loss only, got {loss_type}")
    if args.f_divergence_type != "reverse_kl":
        raise ConfigError(
            f"f_divergence_type: CREAM supports 'reverse_kl' only, got {args.f_divergence_type!r}"
        )
    if args.use_weighting:
        raise ConfigError("use_weighting: WPO weighting is not supported by CREAMTrainer")
