"""CREAM for TRL: ``CREAMConfig`` / ``CREAMTrainer``, drop-in for ``DPOConfig`` / ``DPOTrainer``.

A TRL DPO script becomes a CREAM script by renaming the two classes and adding a float column
``consistency`` in [0, 1] to the preference data. The loss is the paper's Eq. 3.7,
``C * -log s(h) + (1 - C) * -log s(-h)`` with ``h = beta * (chosen - rejected log-ratio)``.

Built for TRL 1.16 (pinned in pyproject.toml). Override points, all of ``DPOTrainer``:

- ``__init__``: checks C before anything is tokenised, chooses the reference (below), then wraps
  ``self.data_collator`` in :class:`ConsistencyCollator` so the batch carries C as a tensor;
- ``_set_signature_columns_if_needed``: keeps ``consistency`` through ``remove_unused_columns``;
- ``_precompute_ref_logps``: returns a data set that already has both reference columns as is;
- ``compute_ref_log_probs``: drops ``consistency`` before the reference forward;
- ``_compute_loss``: the CREAM loss, with DPOTrainer's metrics plus the consistency metrics.

``compact_lm_head`` (default on) and ``padding_free`` apply :mod:`cream_plugin.forward.packing` to
the policy and reference forwards (the same values within float rounding).

Every CREAMTrainer (and SCIRTrainer) carries a
:class:`~cream_plugin.trainers.cream_utils.NonFiniteGuard` (``trainer.nonfinite_guard``; set its
``stage`` to name the run stage in its error): training stops with
:class:`~cream_plugin.trainers.cream_utils.NonFiniteError` at the first NaN/inf loss or gradient
norm, before the optimizer step, and reference log-prob columns must be finite.

Reference model, in this order (nothing is ever reloaded from ``config._name_or_path`` for a
model passed as an object):

1. the data set has ``ref_chosen_logps`` / ``ref_rejected_logps``: they are used as the reference
   and training runs no reference forward (``precompute_ref_log_probs`` is switched on);
2. an explicit ``ref_model``;
3. a PEFT model / ``peft_config``: the policy with its adapter disabled (TRL's behaviour);
4. ``precompute_ref_log_probs=True``: TRL precomputes with the policy before the first step;
5. ``reference_from_policy=True`` (the default): a frozen copy of the policy as passed in, which is
   CREAM's reference (M_t frozen at the start of the iteration). With ``False`` this case raises.
   A model given as a path string is loaded by TRL, and its reference from that same path.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any, NamedTuple

import torch
from trl import DPOConfig, DPOTrainer

from cream_plugin.errors import ConfigError, DataError
from cream_plugin.forward.fast_forward import install_on_trainer
from cream_plugin.plugins.interfaces import REF_COLUMNS
from cream_plugin.trainers.cream_config import CREAMConfig, check_supported
from cream_plugin.trainers.cream_utils import (
    CONSISTENCY_COLUMN,
    ConsistencyCollator,
    NonFiniteGuard,
    cream_loss,
    has_ref_columns,
    validate_consistency,
    validate_ref_logps,
)

logger = logging.getLogger(__name__)

_NON_MODEL_KEYS = frozenset({"completion_mask", CONSISTENCY_COLUMN, *REF_COLUMNS})


def _eval_sets(eval_dataset: Any) -> dict[str, Any]:
    if eval_dataset is None:
        return {}
    if isinstance(eval_dataset, dict):
        return {f"eval_dataset[{k!r}]": v for k, v in eval_dataset.items()}
    return {"eval_dataset": eval_dataset}


def _is_map_style(dataset: Any) -> bool:
    return hasattr(dataset, "column_names") and hasattr(dataset, "__len__")


class PolicyPass(NamedTuple):
    """What one policy forward over a preference batch gives the loss and the metrics."""

    outputs: Any
    model_kwargs: dict[str, Any]
    shift_completion_mask: torch.Tensor
    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_logratios: torch.Tensor
    rejected_logratios: torch.Tensor
    h: torch.Tensor


class CREAMTrainer(DPOTrainer):
    """``DPOTrainer`` with the consistency-regularised loss of CREAM (ICLR 2025, Eq. 3.7).

    Takes the same arguments as ``DPOTrainer``. See the module docstring for how the reference
    is chosen. Logs DPOTrainer's metrics plus ``consistency/mean``,
    ``consistency/frac_below_0.5`` and ``rewards/accuracies_weighted`` (accuracy weighted by C).
    """

    non_model_keys: frozenset[str] = _NON_MODEL_KEYS
    """Batch keys that must never reach ``model(**kwargs)``; subclasses add their own."""
    _tag_names = ["trl", "dpo", "cream"]  # noqa: RUF012 - mirrors the TRL class attribute
    _name = "CREAM"

    def __init__(
        self,
        model: Any,
        ref_model: Any = None,
        args: DPOConfig | None = None,
        data_collator: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        compute_metrics: Any = None,
        callbacks: Any = None,
        optimizers: tuple[Any, Any] = (None, None),
        quantization_config: Any = None,
        peft_config: Any = None,
    ) -> None:
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "")
            args = CREAMConfig(f"{str(name).split('/')[-1] or 'model'}-CREAM")
        check_supported(args)
        self.consistency_mode: str = getattr(args, "consistency_mode", "dynamic")
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")

        # 1. Check C before anything is tokenised, so bad data fails before training.
        self.consistency_mean = 1.0
        if self.consistency_mode != "none":
            if _is_map_style(train_dataset):
                self.consistency_mean = validate_consistency(train_dataset, "train_dataset")
            elif self.consistency_mode == "average":
                raise ConfigError(
                    "consistency_mode: 'average' needs the training set's mean C, which an "
                    "IterableDataset cannot give up front; use a map-style Dataset"
                )
            for name, dataset in _eval_sets(eval_dataset).items():
                if _is_map_style(dataset):
                    validate_consistency(dataset, name)

        # 2. Choose the reference (see the module docstring).
        is_peft = peft_config is not None or _is_peft_model(model)
        if _is_map_style(train_dataset) and has_ref_columns(train_dataset):
            validate_ref_logps(train_dataset, "train_dataset")
            args.precompute_ref_log_probs = True
            logger.info("CREAMTrainer: using the data set's precomputed reference log-probs")
        elif ref_model is None and not is_peft and not args.precompute_ref_log_probs \
                and not isinstance(model, str):
            if not getattr(args, "reference_from_policy", True):
                raise ConfigError(
                    "CREAMTrainer has no reference: give precomputed 'ref_chosen_logps' / "
                    "'ref_rejected_logps' columns, pass ref_model=, use PEFT, or set "
                    "reference_from_policy=True to use a frozen copy of the policy"
                )
            ref_model = copy.deepcopy(model).eval().requires_grad_(False)
            logger.info("CREAMTrainer: the reference is a frozen copy of the policy as passed in")

        self.pack_rows = bool(args.padding_free)
        self.compact_head = bool(getattr(args, "compact_lm_head", True))
        args.padding_free = False  # packing is ours: TRL 1.16 would warn and ignore the flag
        try:
            super().__init__(
                model=model, ref_model=ref_model, args=args, data_collator=data_collator,
                train_dataset=train_dataset, eval_dataset=eval_dataset,
                processing_class=processing_class, compute_metrics=compute_metrics,
                callbacks=callbacks, optimizers=optimizers,
                quantization_config=quantization_config, peft_config=peft_config,
            )
        finally:
            args.padding_free = self.pack_rows
        install_on_trainer(self, padding_free=self.pack_rows, compact_lm_head=self.compact_head)
        # 3. Carry C through the collator (TRL's emits token tensors and ref log-probs only).
        self.data_collator = ConsistencyCollator(
            self.data_collator, required=self.consistency_mode != "none"
        )
        # 4. Stop at the first NaN/inf loss or gradient norm, before the weights change.
        self.nonfinite_guard = NonFiniteGuard.attach(self)

    # -- TRL override points ------------------------------------------------------------------

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        columns = self._signature_columns
        if columns is not None and CONSISTENCY_COLUMN not in columns:
            self._signature_columns = [*columns, CONSISTENCY_COLUMN]

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        if has_ref_columns(dataset):  # the rewarding stage already computed them
            return dataset
        # TRL precomputes inside __init__, before the install there (it is idempotent)
        install_on_trainer(self, padding_free=self.pack_rows, compact_lm_head=self.compact_head)
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        inputs = {k: v for k, v in inputs.items() if k != CONSISTENCY_COLUMN}
        return super().compute_ref_log_probs(model, inputs)

    def _pair_consistency(self, inputs: dict[str, Any], n: int, device: torch.device,
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(C used in the loss, C reported in the metrics), each of shape (n,)."""
        given = inputs.get(CONSISTENCY_COLUMN)
        if given is not None:
            given = given.to(device=device, dtype=torch.float32)
        if self.consistency_mode == "dynamic":
            if given is None:
                raise DataError(
                    "the batch has no 'consistency' values (consistency_mode='dynamic')"
                )
            return given, given
        fill = self.consistency_mean if self.consistency_mode == "average" else 1.0
        used = torch.full((n,), fill, device=device, dtype=torch.float32)
        return used, (given if given is not None else used)

    def _sequence_logps(self, per_token_logps: torch.Tensor,
                        shift_completion_mask: torch.Tensor) -> torch.Tensor:
        """Sum of completion log-probs per sequence, with TRL's LD-DPO option (``ld_alpha``)."""
        if self.ld_alpha is None:
            return per_token_logps.sum(dim=1)
        comp_pos = shift_completion_mask.cumsum(dim=1)
        chosen_lens, rejected_lens = shift_completion_mask.sum(dim=1).long().chunk(2, dim=0)
        shared = torch.minimum(chosen_lens, rejected_lens)
        shared = torch.cat([shared, shared], dim=0).unsqueeze(1)
        shared_logps = (per_token_logps * ((comp_pos > 0) & (comp_pos <= shared))).sum(dim=1)
        tail_logps = (per_token_logps * (comp_pos > shared)).sum(dim=1)
        return shared_logps + self.ld_alpha * tail_logps

    def _policy_pass(self, model: Any, inputs: dict[str, Any]) -> PolicyPass:
        """One policy forward over the chosen+rejected batch (TRL's fused-head path) and the
        log-ratios against the reference (precomputed columns, else a reference forward)."""
        model_kwargs = {k: v for k, v in inputs.items() if k not in self.non_model_keys}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        shift_completion_mask = completion_mask[..., 1:]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = shift_completion_mask.size(1)
        per_token_logps = outputs.log_probs[:, -seq_len:]
        logps = self._sequence_logps(per_token_logps, shift_completion_mask)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)

        if REF_COLUMNS[0] in inputs and REF_COLUMNS[1] in inputs:
            ref_chosen_logps = inputs[REF_COLUMNS[0]].to(logps.device, logps.dtype)
            ref_rejected_logps = inputs[REF_COLUMNS[1]].to(logps.device, logps.dtype)
        else:
            ref_chosen_logps, ref_rejected_logps = self.compute_ref_log_probs(
                self.ref_model if self.ref_model is not None else self.model, inputs
            )
        chosen_logratios = chosen_logps - ref_chosen_logps
        rejected_logratios = rejected_logps - ref_rejected_logps
        h = self.beta * (chosen_logratios - rejected_logratios)
        return PolicyPass(outputs, model_kwargs, shift_completion_mask, chosen_logps,
                          rejected_logps, chosen_logratios, rejected_logratios, h)

    def _with_aux_loss(self, mode: str, loss: torch.Tensor, outputs: Any) -> torch.Tensor:
        """Add a mixture-of-experts router loss, as DPOTrainer does, when the model has one."""
        if not self.aux_loss_enabled:
            return loss
        aux_loss = outputs.aux_loss
        self._metrics[mode]["aux_loss"].append(
            self.accelerator.gather_for_metrics(aux_loss).mean().item()
        )
        return loss + self.router_aux_loss_coef * aux_loss

    def _finish(self, model: Any, loss: torch.Tensor, step: PolicyPass,
                return_outputs: bool) -> Any:
        if return_outputs:
            with torch.no_grad():
                outputs = model(**step.model_kwargs)
            return loss, outputs
        return loss

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        mode = "train" if self.model is not None and self.model.training else "eval"
        step = self._policy_pass(model, inputs)
        c_used, c_seen = self._pair_consistency(inputs, step.h.size(0), step.h.device)
        loss = self._with_aux_loss(mode, cream_loss(step.h, c_used).mean(), step.outputs)
        self._log_metrics(mode, inputs, step.outputs, step.shift_completion_mask,
                          step.chosen_logps, step.rejected_logps, step.chosen_logratios,
                          step.rejected_logratios, c_seen)
        return self._finish(model, loss, step, return_outputs)

    # -- metrics ------------------------------------------------------------------------------

    def _gathered_ratio(self, num: torch.Tensor, den: torch.Tensor) -> float:
        num = self.accelerator.gather_for_metrics(num.detach().float().reshape(1)).sum()
        den = self.accelerator.gather_for_metrics(den.detach().float().reshape(1)).sum()
        return (num / den).item() if den.item() > 0 else 0.0

    def _log_metrics(
        self,
        mode: str,
        inputs: dict[str, Any],
        outputs: Any,
        shift_completion_mask: torch.Tensor,
        chosen_logps: torch.Tensor,
        rejected_logps: torch.Tensor,
        chosen_logratios: torch.Tensor,
        rejected_logratios: torch.Tensor,
        consistency: torch.Tensor,
    ) -> None:
        """DPOTrainer's metrics (same keys, same cross-rank aggregation) plus CREAM's three."""
        metrics = self._metrics[mode]
        seq_len = shift_completion_mask.size(1)
        mask = shift_completion_mask
        entropy = outputs.entropy[:, -seq_len:].detach()
        metrics["entropy"].append(self._gathered_ratio((entropy * mask).sum(), mask.sum()))
        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum())
            tokens = tokens.sum().item()
            self._total_train_tokens += tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]

        chosen_mask, rejected_mask = mask.bool().chunk(2, dim=0)
        chosen_logits, rejected_logits = outputs.mean_logits[:, -seq_len:].detach().chunk(2, dim=0)
        metrics["logits/chosen"].append(
            self._gathered_ratio(chosen_logits[chosen_mask].sum(), chosen_mask.sum()))
        metrics["logits/rejected"].append(
            self._gathered_ratio(rejected_logits[rejected_mask].sum(), rejected_mask.sum()))
        chosen_top1, _ = outputs.is_top1[:, -seq_len:].chunk(2, dim=0)
        metrics["mean_token_accuracy"].append(
            self._gathered_ratio((chosen_top1 & chosen_mask).sum(), chosen_mask.sum()))

        chosen_rewards = self.beta * chosen_logratios.detach()
        rejected_rewards = self.beta * rejected_logratios.detach()
        correct = (chosen_rewards > rejected_rewards).float()
        gather = self.accelerator.gather
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather(correct).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())

        c = gather(consistency.detach().float())
        all_correct = gather(correct)
        metrics["consistency/mean"].append(c.mean().item())
        metrics["consistency/frac_below_0.5"].append((c < 0.5).float().mean().item())
        c_sum = c.sum().item()
        metrics["rewards/accuracies_weighted"].append(
            (c * all_correct).sum().item() / c_sum if c_sum > 0 else 0.0
        )


def _is_peft_model(model: Any) -> bool:
    with contextlib.suppress(ImportError):
        from accelerate.utils import is_peft_model

        return bool(is_peft_model(model))
    return False
