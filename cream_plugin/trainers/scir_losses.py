"""SCIR's loss pieces as pure functions on probability tensors (tested on hand-made tensors):
the consistency loss between the implicit and the generative preference, the pair selection
rule and the DPO loss over the selected pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cream_plugin.errors import ConfigError

CONSISTENCY_LOSSES = ("sym_kl", "mse")
SELECTIONS = ("agree", "chosen", "all")
_EPS = 1e-6



def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(_EPS, 1.0 - _EPS)
    return torch.log(p) - torch.log1p(-p)


def consistency_loss(p_dpo: torch.Tensor, p_gen: torch.Tensor, *, kind: str = "sym_kl",
                     confidence_weight: float = 0.1, dpo_logit: torch.Tensor | None = None,
                     ) -> torch.Tensor:
    """Per-pair inconsistency penalty between two preference probabilities, shape (n,).

    ``sym_kl``: KL(P_dpo || P_gen) + KL(P_gen || P_dpo) between the two Bernoulli distributions,
    which equals ``(p - q) * (logit p - logit q)``; ``mse``: ``(p - q)^2``. Plus
    ``confidence_weight * H((p + q) / 2)``, the binary entropy of the mean (lower when the two
    agree confidently). ``dpo_logit`` (= h) avoids re-deriving logit(P_dpo) from a rounded sigmoid.
    """
    if kind == "sym_kl":
        logit_dpo = dpo_logit if dpo_logit is not None else _logit(p_dpo)
        gap = (p_dpo - p_gen) * (logit_dpo - _logit(p_gen))
    elif kind == "mse":
        gap = (p_dpo - p_gen) ** 2
    else:
        raise ConfigError(
            f"consistency_loss: {kind!r} is not one of {', '.join(CONSISTENCY_LOSSES)}")
    if confidence_weight:
        mean = (0.5 * (p_dpo + p_gen)).clamp(_EPS, 1.0 - _EPS)
        entropy = -(mean * torch.log(mean) + (1.0 - mean) * torch.log1p(-mean))
        gap = gap + confidence_weight * entropy
    return gap


def select_pairs(p_dpo: torch.Tensor, p_gen: torch.Tensor, *, mode: str = "agree",
                 confidence_threshold: float = 0.5, side_margin: float = 0.0,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Which pairs DPO trains on, and in which direction: ``(selected bool, sign +-1)``.

    A probability is on the chosen side when ``> 0.5 + side_margin``, on the rejected side when
    ``< 0.5 - side_margin``, else on neither (a tie never agrees).

    - ``agree``: both on the same side and ``max(m, 1 - m) >= confidence_threshold`` with m their
      mean; the agreed side is the label (sign -1 trains the swapped pair), as in the paper where
      the consistent prediction labels the pair;
    - ``chosen``: both on the chosen side and ``m >= confidence_threshold`` (the given label kept);
    - ``all``: every pair, the given label (plain DPO plus the consistency loss).
    """
    p_dpo, p_gen = p_dpo.detach(), p_gen.detach()
    mean = 0.5 * (p_dpo + p_gen)
    up = (p_dpo > 0.5 + side_margin) & (p_gen > 0.5 + side_margin)
    down = (p_dpo < 0.5 - side_margin) & (p_gen < 0.5 - side_margin)
    ones = torch.ones_like(mean)
    if mode == "agree":
        confident = torch.maximum(mean, 1.0 - mean) >= confidence_threshold
        return (up | down) & confident, torch.where(down, -ones, ones)
    if mode == "chosen":
        return up & (mean >= confidence_threshold), ones
    if mode == "all":
        return torch.ones_like(up), ones
    raise ConfigError(f"selection: {mode!r} is not one of {', '.join(SELECTIONS)}")


def agreement(p_dpo: torch.Tensor, p_gen: torch.Tensor) -> torch.Tensor:
    """Per pair: 1.0 when both internal reward models prefer the same response (ties: 0.0)."""
    same = ((p_dpo > 0.5) & (p_gen > 0.5)) | ((p_dpo < 0.5) & (p_gen < 0.5))
    return same.float()


def selected_dpo_loss(h: torch.Tensor, selected: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Sigmoid DPO loss averaged over the selected pairs; 0 (graph kept) when none is selected."""
    per_pair = -F.logsigmoid(sign.to(h.dtype) * h)
    weight = selected.to(h.dtype)
    return (per_pair * weight).sum() / weight.sum().clamp(min=1.0)


# -- config ---------------------------------------------------------------------------------------
