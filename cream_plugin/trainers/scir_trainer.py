"""SCIR for TRL: ``SCIRConfig`` / ``SCIRTrainer``, self-consistent internal rewards.

SCIR (Zhou et al. 2025, "Self-Consistency of the Internal Reward Models Improves Self-Rewarding
Language Models") makes two internal reward models of the *same* model agree inside each
training step. For a pair (y_w, y_l) of the batch:

- the implicit DPO reward gives ``P_dpo = sigmoid(h)``, ``h = beta * (log-ratio_w - log-ratio_l)``;
- the generative judge gives ``P_gen``, the order-averaged probability that the current policy,
  prompted as a pairwise judge, prefers y_w
  (:func:`cream_plugin.rewarders.pairwise_judge.pair_preference`).

The loss is ``dpo_weight * DPO(selected pairs) + consistency_weight * L_cons`` where ``L_cons``
pulls P_dpo and P_gen together (symmetric KL or squared difference) and towards confidence
(``confidence_weight`` times the binary entropy of their mean), and DPO is applied only to the
pairs on which the two agree. Every choice the paper leaves open is a field of
:class:`SCIRConfig` and is explained in docs/scir.md.

:class:`SCIRTrainer` subclasses :class:`~cream_plugin.trainers.cream_trainer.CREAMTrainer` for its
reference handling (precomputed ``ref_*_logps`` columns, explicit ref model, PEFT, frozen copy) and
its metrics. A ``consistency`` column may be present and is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from trl import DPOTrainer

from cream_plugin.errors import ConfigError, DataError
from cream_plugin.forward.fast_forward import trains_padding_free
from cream_plugin.forward.prefix_tree import takes_tree_mask
from cream_plugin.plugins.interfaces import CONSISTENCY_COLUMN, PAIR_TEXT_COLUMNS, REF_COLUMNS
from cream_plugin.rewarders.pairwise_judge import (
    DEFAULT_LABELS,
    PAIR_TEMPLATE,
    pair_preference,
    verdict_token_ids,
)
from cream_plugin.trainers.cream_trainer import CREAMTrainer
from cream_plugin.trainers.scir_config import SCIRConfig, check_scir
from cream_plugin.trainers.scir_judge import (
    JUDGE_IDS,
    JUDGE_MASK,
    PairJudgeCollator,
    judge_preference_from_batch,
    response_text,
)
from cream_plugin.trainers.scir_losses import (
    agreement,
    consistency_loss,
    select_pairs,
    selected_dpo_loss,
)

_NON_MODEL_KEYS = frozenset({"completion_mask", CONSISTENCY_COLUMN, JUDGE_IDS, JUDGE_MASK,
                             *REF_COLUMNS})


class SCIRTrainer(CREAMTrainer):
    """``DPOTrainer`` whose step makes the implicit and the generative reward of the policy agree.

    Takes the same arguments as ``DPOTrainer`` (an :class:`SCIRConfig` as ``args``); the data
    needs ``prompt`` / ``chosen`` / ``rejected`` (optionally ``ref_chosen_logps`` /
    ``ref_rejected_logps``). Logs DPOTrainer's metrics plus ``scir/agreement`` (share of pairs
    where both internal reward models prefer the same response), ``scir/selected``,
    ``scir/flipped``, ``scir/p_dpo``, ``scir/p_gen``, ``scir/dpo_loss`` and
    ``scir/consistency_loss``.
    """

    non_model_keys = _NON_MODEL_KEYS

    _tag_names = ["trl", "dpo", "scir"]  # noqa: RUF012 - mirrors the TRL class attribute
    _name = "SCIR"

    def __init__(self, model: Any, ref_model: Any = None, args: Any = None, **kwargs: Any
                 ) -> None:
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "")
            args = SCIRConfig(f"{str(name).split('/')[-1] or 'model'}-SCIR")
        if not isinstance(args, SCIRConfig):
            raise ConfigError(f"SCIRTrainer needs an SCIRConfig, got {type(args).__name__}")
        check_scir(args)
        super().__init__(model, ref_model, args, **kwargs)
        tokenizer = self.processing_class
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor's text tokenizer
        self.verdict_ids = verdict_token_ids(tokenizer, args.judge_labels)
        inner = self.data_collator
        inner = getattr(inner, "inner", inner)  # drop CREAM's consistency wrapper: C is ignored
        self.data_collator = PairJudgeCollator(
            inner, tokenizer, labels=tuple(args.judge_labels), template=PAIR_TEMPLATE,
            max_response_tokens=args.judge_max_response_tokens,
            answer_prefix=args.judge_answer_prefix)
        self.judge_pad_id = self.data_collator.pad_id

    # -- TRL override points ------------------------------------------------------------------

    def _set_signature_columns_if_needed(self) -> None:
        DPOTrainer._set_signature_columns_if_needed(self)  # CREAM's would keep 'consistency'
        columns = self._signature_columns
        if columns is not None:
            missing = [c for c in PAIR_TEXT_COLUMNS if c not in columns]
            self._signature_columns = [*columns, *missing]

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        inputs = {k: v for k, v in inputs.items() if k not in (JUDGE_IDS, JUDGE_MASK)}
        return super().compute_ref_log_probs(model, inputs)

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        mode = "train" if self.model is not None and self.model.training else "eval"
        args: SCIRConfig = self.args  # type: ignore[assignment]
        step = self._policy_pass(model, inputs)
        outputs, h = step.outputs, step.h

        # The two internal reward models' P(chosen > rejected), both from the current policy.
        p_dpo = torch.sigmoid(h.float())
        packed = trains_padding_free(self)
        p_gen = judge_preference_from_batch(
            model, inputs[JUDGE_IDS], inputs[JUDGE_MASK], self.verdict_ids, self.judge_pad_id,
            args.judge_batch_size, packed=packed,
            tree=packed and takes_tree_mask(self.accelerator.unwrap_model(model)),
        ).to(p_dpo.device)
        h_cons, p_dpo_cons, p_gen_cons = h.float(), p_dpo, p_gen
        if args.consistency_grad == "dpo":
            p_gen_cons = p_gen.detach()
        elif args.consistency_grad == "gen":
            h_cons, p_dpo_cons = h_cons.detach(), p_dpo.detach()
        l_cons = consistency_loss(p_dpo_cons, p_gen_cons, kind=args.consistency_loss,
                                  confidence_weight=args.confidence_weight,
                                  dpo_logit=h_cons).mean()
        selected, sign = select_pairs(p_dpo, p_gen, mode=args.selection,
                                      confidence_threshold=args.confidence_threshold,
                                      side_margin=args.side_margin)
        l_dpo = selected_dpo_loss(h, selected, sign)
        loss = self._with_aux_loss(
            mode, args.dpo_weight * l_dpo + args.consistency_weight * l_cons, outputs
        )
        self._log_metrics(mode, inputs, outputs, step.shift_completion_mask, step.chosen_logps,
                          step.rejected_logps, step.chosen_logratios, step.rejected_logratios,
                          torch.ones_like(h))
        self._log_scir_metrics(mode, p_dpo, p_gen, selected, sign, l_dpo, l_cons)
        return self._finish(model, loss, step, return_outputs)

    def _log_metrics(self, mode: str, inputs: dict[str, Any], outputs: Any,
                     *args: Any) -> None:
        super()._log_metrics(mode, inputs, outputs, *args)
        metrics = self._metrics[mode]
        for key in ("consistency/mean", "consistency/frac_below_0.5",
                    "rewards/accuracies_weighted"):
            metrics.pop(key, None)  # CREAM's C metrics mean nothing here

    def _log_scir_metrics(self, mode: str, p_dpo: torch.Tensor, p_gen: torch.Tensor,
                          selected: torch.Tensor, sign: torch.Tensor, l_dpo: torch.Tensor,
                          l_cons: torch.Tensor) -> None:
        gather = self.accelerator.gather
        metrics = self._metrics[mode]
        p_dpo_all, p_gen_all = gather(p_dpo.detach()), gather(p_gen.detach())
        chosen = gather(selected.float())
        flipped = gather((selected & (sign < 0)).float())
        metrics["scir/agreement"].append(agreement(p_dpo_all, p_gen_all).mean().item())
        metrics["scir/selected"].append(chosen.mean().item())
        metrics["scir/flipped"].append(flipped.mean().item())
        metrics["scir/p_dpo"].append(p_dpo_all.mean().item())
        metrics["scir/p_gen"].append(p_gen_all.mean().item())
        metrics["scir/dpo_loss"].append(gather(l_dpo.detach().reshape(1)).mean().item())
        metrics["scir/consistency_loss"].append(gather(l_cons.detach().reshape(1)).mean().item())


# -- measuring without training -------------------------------------------------------------------


def internal_consistency(model: Any, tokenizer: Any, pairs: Any, *, beta: float,
                         ref_chosen_logps: Sequence[float] | None = None,
                         ref_rejected_logps: Sequence[float] | None = None,
                         batch_size: int = 8, max_length: int | None = None,
                         labels: Sequence[str] = DEFAULT_LABELS,
                         max_response_tokens: int | None = 512, progress: bool = False,
                         ) -> dict[str, Any]:
    """How often the model's two internal reward models agree on a pairs set (no training).

    ``pairs``: rows (dicts or a Dataset) with ``prompt`` / ``chosen`` / ``rejected``; reference
    log-probs come from the arguments, else from the rows' ``ref_*_logps`` columns. Returns
    ``rate`` (share of pairs where P_dpo and P_gen are on the same side of 0.5; a tie at exactly
    0.5 counts as disagreement), ``n``, ``ties_dpo``, ``mean_p_dpo``, ``mean_p_gen``.
    """
    from cream_plugin.forward.logprobs import response_logps

    rows = [dict(r) for r in pairs]
    if not rows:
        return {"rate": float("nan"), "n": 0, "ties_dpo": 0, "mean_p_dpo": float("nan"),
                "mean_p_gen": float("nan")}
    for i, row in enumerate(rows):
        missing = [c for c in PAIR_TEXT_COLUMNS if c not in row]
        if missing:
            raise DataError(f"pairs row {i + 1}: missing {', '.join(missing)}")
    eos = getattr(tokenizer, "eos_token", None)
    prompts = [r["prompt"] for r in rows]
    chosen = [response_text(r["chosen"], eos) for r in rows]
    rejected = [response_text(r["rejected"], eos) for r in rows]
    refs = []
    for column, given in zip(REF_COLUMNS, (ref_chosen_logps, ref_rejected_logps), strict=True):
        if given is None:
            if any(column not in r or r[column] is None for r in rows):
                raise DataError(f"internal_consistency: no {column} given and the pairs lack it")
            given = [float(r[column]) for r in rows]
        if len(given) != len(rows):
            raise DataError(f"{column}: {len(given)} values for {len(rows)} pairs")
        refs.append(torch.tensor([float(v) for v in given], dtype=torch.float64))
    table = response_logps(model, tokenizer, prompts, [[c, r] for c, r in zip(
        chosen, rejected, strict=True)], batch_size=batch_size, max_length=max_length,
        progress=progress)
    policy = torch.from_numpy(table.sum)
    h = beta * ((policy[:, 0] - refs[0]) - (policy[:, 1] - refs[1]))
    p_dpo = torch.sigmoid(h).float()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            p_gen = pair_preference(model, tokenizer, prompts, chosen, rejected,
                                    batch_size=batch_size, labels=labels,
                                    max_response_tokens=max_response_tokens).float().cpu()
    finally:
        model.train(was_training)
    return {
        "rate": agreement(p_dpo, p_gen).mean().item(),
        "n": len(rows),
        "ties_dpo": int((p_dpo == 0.5).sum()),
        "mean_p_dpo": p_dpo.mean().item(),
        "mean_p_gen": p_gen.mean().item(),
    }
