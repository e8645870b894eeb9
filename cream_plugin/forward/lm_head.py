"""The LM head on the positions that are scored, and nothing else: log p(target) in chunks so no
(positions, vocabulary) tensor of a whole batch is built; TRL's fused head for heads with a
logit scale. Shared by log-prob scoring, its prompt trees and the exact-KL pass.

``FORWARD_STATS`` counts the tokens each scoring call spends (sequences, tokens, padding, scored
positions), so a benchmark or a test can check that nothing is scored twice.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

FORWARD_STATS: Counter[str] = Counter()
HEAD_CHUNK = 1024
"""Positions projected through the LM head at once."""


def ensure_fused_lm_head(model: Any) -> Any:
    """Patch ``model`` once with TRL's fused LM head (generation unaffected); return the target."""
    from trl.trainer.utils import add_fused_lm_head

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(target, "_cream_fused_lm_head", False):
        add_fused_lm_head(target)
        target._cream_fused_lm_head = True
    return target


def plain_head(model: Any) -> bool:
    """Whether the LM head is a plain projection (no logit scale or soft-capping to reproduce)."""
    cfg = model.config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    scaled = ("final_logit_softcapping", "logit_scale", "output_multiplier",
              "lm_head_multiplier", "logits_scaling")
    return all(getattr(cfg, name, None) in (None, 1, 1.0) for name in scaled)


def head_logps(model: Any, states: Any, targets: Any) -> Any:
    """log p(target) from the final hidden states of the positions that predict them (float32),
    through the LM head in chunks, so no (positions, vocab) tensor of every position is built."""
    import torch

    head = model.get_output_embeddings()
    per_token = torch.empty(targets.shape[0], dtype=torch.float32, device=states.device)
    for k in range(0, targets.shape[0], HEAD_CHUNK):
        logits = head(states[k : k + HEAD_CHUNK]).float()
        picked = logits.gather(1, targets[k : k + HEAD_CHUNK, None]).squeeze(1)
        per_token[k : k + HEAD_CHUNK] = picked - logits.logsumexp(dim=-1)
    return per_token
