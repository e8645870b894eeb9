"""Seeded, batched response sampling from an in-memory transformers model.

Reproducibility is per response, not per batch: every (prompt, sample) row draws its noise
from its own generator seeded by ``(seed, prompt text, sample index)``, and the token is chosen
with the Gumbel-max trick (``argmax(logits / T + Gumbel)`` over the top-p nucleus), which is an
exact draw from the tempered, nucleus-filtered distribution. So the same seed gives the same
responses whatever the batch size, the order of the prompts or the other prompts in the batch
(a prompt repeated in one call gets fresh samples for each repeat).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.plugins.interfaces import Prompt

log = logging.getLogger("cream.sampling")


def row_seed(seed: int, prompt_key: str, sample_index: int) -> int:
    """A 63-bit seed for one (prompt, sample) row, stable across processes and platforms."""
    blob = f"{seed}\0{prompt_key}\0{sample_index}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


def prompt_keys(texts: Sequence[str]) -> list[str]:
    """A key per prompt: its text plus which repeat of that text it is (order-independent)."""
    seen: Counter[str] = Counter()
    keys = []
    for text in texts:
        keys.append(f"{seen[text]}:{text}")
        seen[text] += 1
    return keys


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """Chat-template text ending in the assistant header; a string counts as one user turn."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise ValueError(f"a prompt must be a string or a list of {{role, content}}: {prompt!r}")
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        return text
    if isinstance(prompt, str):
        return prompt
    raise ValueError(
        "the tokenizer has no chat template, so message-list prompts cannot be rendered"
    )


# Candidates looked at before falling back to the full sorted vocabulary: at T=0.8, top_p=0.95 the
# nucleus of a 135M chat model lies in the top 256 tokens for ~95% of the steps (top 64: ~85%).
_CANDIDATES = 256
# A row whose nucleus boundary is this close to top_p is decided by the full-sort path, so float
# rounding of the two paths can never disagree on which tokens are in the nucleus.
_BOUNDARY_EPS = 1e-5


class _RowSampler:
    """Temperature, top-p, then per-row Gumbel noise: the token is the argmax of the noisy scores.

    Every row draws ``vocab`` uniforms from its own generator at every step (so its stream, and so
    its tokens, do not depend on the batch), but the nucleus, the Gumbel transform and the argmax
    are computed over the top ``_CANDIDATES`` tokens only when the nucleus provably lies inside
    them; other rows take the full-vocabulary path. Both paths pick the same token.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        import torch

        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def select(self, keep: Any) -> None:
        """Keep only the rows ``keep`` (a 1-D index tensor) for the next steps."""
        self.generators = [self.generators[int(r)] for r in keep.tolist()]

    def _uniforms(self, vocab: int) -> Any:
        import torch

        uniform = torch.empty((len(self.generators), vocab), dtype=torch.float64)
        for row, generator in zip(uniform, self.generators, strict=True):
            torch.rand(vocab, generator=generator, dtype=torch.float64, out=row)
        return uniform

    def _full(self, scores: Any, uniform: Any) -> Any:
        """The reference path: sort the whole vocabulary, mask outside the nucleus, add noise."""
        import torch

        if self.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
            probs = sorted_scores.softmax(dim=-1)
            # Drop a token when the tokens ranked above it already cover top_p (keeps the first).
            drop_sorted = (probs.cumsum(dim=-1) - probs) >= self.top_p
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-300)))
        return (scores + gumbel.to(scores.dtype)).argmax(dim=-1)

    def __call__(self, logits: Any) -> Any:
        """One token per row from ``logits`` (rows, vocab)."""
        import torch

        scores = logits.float() / self.temperature
        uniform = self._uniforms(scores.shape[-1])
        k = min(_CANDIDATES, scores.shape[-1])
        if self.top_p >= 1.0 or k == scores.shape[-1]:
            return self._full(scores, uniform)
        top, index = scores.topk(k, dim=-1)
        probs = (top - scores.max(dim=-1, keepdim=True).values).exp()
        probs = probs / (scores - top[:, :1]).exp().sum(dim=-1, keepdim=True)
        before = probs.cumsum(dim=-1) - probs
        drop = before >= self.top_p
        ambiguous = ((before - self.top_p).abs() < _BOUNDARY_EPS).any(dim=-1)
        fast = drop[:, -1] & ~ambiguous  # the nucleus closes inside the candidates
        noise = -torch.log(-torch.log(uniform.gather(1, index).clamp_min(1e-300)))
        noisy = (top + noise.to(top.dtype)).masked_fill(drop, float("-inf"))
        tokens = index.gather(1, noisy.argmax(dim=-1, keepdim=True)).squeeze(1)
        slow = (~fast).nonzero().squeeze(1)
        if slow.numel():
            tokens[slow] = self._full(scores[slow], uniform[slow])
        return tokens


class HFSampler:
    """N seeded responses per prompt from an in-memory transformers model.

    Prompts are sorted by token length and generated in batches of ``batch_size`` sequences
    (left padding), so padding is small. ``temperature=0`` is greedy decoding. Responses are cut
    at the first EOS or pad token and decoded without special tokens; an empty response is kept
    as ``""`` and counted in ``stats["empty"]``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        temperature: float = 0.8,
        top_p: float = 0.95,
        max_new_tokens: int = 256,
        batch_size: int = 16,
        progress: bool = True,
    ) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")
        self.model = model
        self.tokenizer = tokenizer
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.progress = progress
        self.stats: Counter[str] = Counter()

    def _check_lengths(self, encoded: list[list[int]]) -> None:
        """Every prompt plus ``max_new_tokens`` fits the model's context: a longer prompt would
        decode for hours past the positions the model was trained on."""
        context = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if not isinstance(context, int):
            return
        for i, ids in enumerate(encoded):
            if len(ids) + self.max_new_tokens > context:
                raise DataError(
                    f"prompt {i + 1} of {len(encoded)}: {len(ids)} tokens plus max_new_tokens="
                    f"{self.max_new_tokens} exceed the model's context of {context} tokens; "
                    "shorten the prompt or lower max_new_tokens"
                )

    def _stop_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config, self.tokenizer):
            for attr in ("eos_token_id", "pad_token_id"):
                value = getattr(source, attr, None)
                if value is None:
                    continue
                ids.update(value if isinstance(value, list) else [value])
        return ids

    def generate(self, prompts: Sequence[Prompt], n: int, *, seed: int) -> list[list[str]]:
        """``n`` responses for each prompt, in prompt order; identical for identical seeds."""
        import torch
        from tqdm.auto import tqdm

        from cream_plugin.forward.decoding import left_padded

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        texts = [render_prompt(self.tokenizer, p) for p in prompts]
        keys = prompt_keys(texts)
        encoded = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        self._check_lengths(encoded)
        order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), i))
        rows = [(i, j) for i in order for j in range(n)]
        log.info("sampling %d prompts x %d responses (longest prompt %d tokens) in %d batches",
                 len(prompts), n, max(map(len, encoded), default=0),
                 -(-len(rows) // self.batch_size))
        results: list[list[str]] = [[""] * n for _ in prompts]
        stop_ids = self._stop_ids()
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = next(iter(stop_ids)) if stop_ids else 0
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        started = time.perf_counter()
        batches = [rows[k : k + self.batch_size] for k in range(0, len(rows), self.batch_size)]
        try:
            for batch in tqdm(batches, desc="sampling", unit="batch", disable=not self.progress):
                slot = {i: r for r, i in enumerate(dict.fromkeys(i for i, _ in batch))}
                ids, mask = left_padded([encoded[i] for i in slot], pad_id)
                source = torch.tensor([slot[i] for i, _ in batch], dtype=torch.long)
                seeds = [row_seed(seed, keys[i], j) for i, j in batch]
                out = self._generate_batch(ids.to(device), mask.to(device), seeds, stop_ids, source)
                for r, (i, j) in enumerate(batch):
                    results[i][j] = self._decode(out[r].tolist(), stop_ids)
        finally:
            if was_training:
                self.model.train()
        self.stats["prompts"] += len(prompts)
        self.stats["responses"] += len(rows)
        self.stats["empty"] += sum(1 for resp in results for text in resp if not text.strip())
        self.stats["milliseconds"] += int(1000 * (time.perf_counter() - started))
        return results

    def _generate_batch(
        self, ids: Any, mask: Any, seeds: list[int], stop_ids: set[int], source: Any = None
    ) -> Any:
        """New tokens (rows, steps) of a left-padded batch; a row's tokens end at its stop token.

        ``source`` maps each row to its prompt in ``ids`` (the N samples of a prompt share one
        prefill of its prompt).

        ``decoding.decode`` instead of ``generate``: a row leaves the batch (and the KV cache) as
        soon as it emits a stop token, and the cache is written in place. It computes what greedy
        ``generate`` with the row sampler as logits processor computes.
        """
        import torch

        from cream_plugin.forward.decoding import decode

        stop = torch.tensor(sorted(stop_ids), dtype=torch.long, device=ids.device)
        pick = _RowSampler(seeds, self.temperature, self.top_p) if self.temperature > 0 else None

        def finished(alive: Any, out: Any, step: int) -> Any:
            return torch.isin(out[alive, step].to(stop.device), stop)

        out = decode(
            self.model, ids, mask, max_new_tokens=self.max_new_tokens,
            choose=(lambda logits: logits.argmax(dim=-1)) if pick is None else pick,
            finished=finished, kept=None if pick is None else pick.select, row_source=source,
        )
        self.stats["new_tokens"] += int((out >= 0).sum())
        return out

    def _decode(self, tokens: list[int], stop_ids: set[int]) -> str:
        for k, tok in enumerate(tokens):
            if tok in stop_ids or tok < 0:  # -1 fills the steps after a row stopped
                tokens = tokens[:k]
                break
        text: str = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return text.strip()

