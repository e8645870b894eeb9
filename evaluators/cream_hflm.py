"""``cream-hf``: lm-eval's HFLM that scores a multiple-choice context once, not once per choice.

Stock ``HFLM._loglikelihood_tokens`` runs every (context, choice) pair as its own sequence, so
an ARC question with four answers runs its question four times and projects every position onto
the vocabulary. Here the requests that share a context (the same token ids, as HFLM's own
``_encode_pair`` split them) are scored in one row: the context minus its last token, then each
choice as a segment ``[last context token] + continuation[:-1]``, under a 4-D attention mask that
lets a segment see the context and its own earlier tokens but no other choice. A question with
all its choices is one stretch of a row, and a batch's short questions share rows (within the
longest one's width), so a question runs once per forward, and only the positions that score
a continuation token go through the LM head. Token ids, positions and the causal window of
every scored position are those of HFLM's sequence ``context + continuation``, so the
log-likelihoods agree with HFLM's to float rounding (checked within 1e-4) and the is-greedy
flags are the same.

What cannot share a context takes HFLM's own path: a context with a single request,
``loglikelihood_rolling`` windows, sequences that HFLM would left-truncate at ``max_length``,
seq2seq models, ``batch_size="auto"`` and models whose attention is not plain full attention
(sliding windows, which the custom mask would not reproduce). ``generate_until`` is
``DecodeLoopHFLM``'s.

Registered with lm-eval as ``cream-hf`` when this module is imported: in Python through
``LMEvalEvaluator``; from the shell, a plain ``lm_eval --model cream-hf`` finds it through the
start-up hook the install ships (``_cream_lm_eval_hook``), or through
``python -m cream_plugin.lm_eval_cli``.
The tree layout is :mod:`cream_plugin.forward.prefix_tree`'s, which SCIR's judge pairs and packed
DPO batches use too.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from cream_plugin.evaluators.decode_loop_hflm import DecodeLoopHFLM
from cream_plugin.forward.prefix_tree import build_tree_rows, plain_attention

Request = tuple[Any, list[int], list[int]]
"""What ``_loglikelihood_tokens`` receives: ((context, continuation) or None, ids, ids)."""


def _flag(value: Any) -> bool:
    """A model_args value as a bool (lm-eval passes ``False`` from the shell as a bool, a
    Python caller may pass a string)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off", "")
    return bool(value)


@register_model("cream-hf")
class CreamHFLM(DecodeLoopHFLM):
    """HFLM with shared-context log-likelihoods and ``DecodeLoopHFLM``'s greedy generation.

    ``shared_context=False`` (``--model_args ...,shared_context=False``) scores log-likelihoods
    exactly as HFLM; ``decode_loop=False`` generates with HFLM's ``generate``.
    """

    def __init__(self, *args: Any, shared_context: Any = True, decode_loop: Any = True,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_context = _flag(shared_context)
        self.decode_loop = _flag(decode_loop)
        self.shared_stats = {"shared_requests": 0, "stock_requests": 0, "contexts": 0,
                             "forward_tokens": 0}

    # -- generation: DecodeLoopHFLM unless turned off ------------------------------------------

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        if self.decode_loop:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        return list(HFLM.generate_until(self, requests, disable_tqdm=disable_tqdm))

    def _model_generate(self, context: Any, max_length: int, stop: list[str],
                        **generation_kwargs: Any) -> Any:
        if self.decode_loop:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        return HFLM._model_generate(self, context, max_length, stop, **generation_kwargs)

    # -- log-likelihood -----------------------------------------------------------------------

    def shared_context_reason(self) -> str | None:
        """Why no request can share its context here, or None when they can."""
        if not self.shared_context:
            return "shared_context=False"
        if self.backend != "causal":
            return "not a causal LM"
        if not isinstance(self.batch_size, int):
            return f"batch_size={self.batch_size!r}"
        if not plain_attention(self.model):
            return "sliding-window or hybrid attention"
        return None

    def _shareable(self, request: Request) -> bool:
        """A request scored from a shared context: a real request (rolling windows carry no
        key) whose whole sequence fits, as HFLM would not truncate it, with a context of at
        least two tokens (the prefix, and the last that starts each choice segment)."""
        key, context, continuation = request
        return (key is not None and len(context) >= 2 and len(continuation) >= 1
                and len(context) + len(continuation) <= self.max_length + 1)

    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        """HFLM's result for every request, in request order; requests that share a context
        token for token are scored in one row per context, the rest by HFLM."""
        if override_bs is not None or self.shared_context_reason() is not None:
            return list(super()._loglikelihood_tokens(
                requests, disable_tqdm=disable_tqdm, override_bs=override_bs))
        groups: dict[tuple[int, ...], list[int]] = {}
        stock: list[int] = []
        for i, request in enumerate(requests):
            if self._shareable(request):
                groups.setdefault(tuple(request[1]), []).append(i)
            else:
                stock.append(i)
        for context, members in list(groups.items()):
            if len(members) < 2:  # nothing to share: HFLM's path
                stock.extend(members)
                del groups[context]
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        if stock:
            stock.sort()
            out = super()._loglikelihood_tokens([requests[i] for i in stock],
                                                disable_tqdm=disable_tqdm)
            for i, answer in zip(stock, out, strict=True):
                results[i] = answer
        self.shared_stats["stock_requests"] += len(stock)
        if groups:
            self._score_shared(requests, groups, results, disable_tqdm)
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _score_shared(self, requests: list[Request], groups: dict[tuple[int, ...], list[int]],
                      results: list[tuple[float, bool] | None], disable_tqdm: bool) -> None:
        """Fill ``results`` for the grouped requests: contexts longest first, ``batch_size``
        contexts (each with all its choices) per forward."""
        from tqdm.auto import tqdm

        batch = max(1, int(self.batch_size))
        contexts = sorted(groups, key=lambda c: (-(len(c) + sum(
            len(requests[i][2]) for i in groups[c])), c))
        total = sum(len(m) for m in groups.values())
        bar = tqdm(total=total, disable=disable_tqdm or self.rank != 0,
                   desc="loglikelihood (shared contexts)")
        for start in range(0, len(contexts), batch):
            chunk = contexts[start:start + batch]
            members = [groups[c] for c in chunk]
            answers = self._score_trees(chunk, [[requests[i][2] for i in m] for m in members])
            for indices, found in zip(members, answers, strict=True):
                for i, answer in zip(indices, found, strict=True):
                    results[i] = answer
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
                bar.update(len(indices))
            self.shared_stats["contexts"] += len(chunk)
        self.shared_stats["shared_requests"] += total
        bar.close()

    def _score_trees(self, contexts: list[tuple[int, ...]], choices: list[list[list[int]]]
                     ) -> list[list[tuple[float, bool]]]:
        """(log-likelihood, is greedy) of every choice of every context, from one forward.

        Each context is one stretch of a row: ``context[:-1]``, then per choice the segment
        ``[context[-1]] + continuation[:-1]`` at the positions it has in HFLM's sequence
        ``context + continuation``. A 4-D mask lets a segment see the context and its own earlier
        tokens, never another choice or context; padding sees only itself. Contexts share a row
        when they fit in the longest one's width. So every logit that scores a
        continuation token sees what it sees in HFLM, and only those positions are projected
        onto the vocabulary.
        """
        import torch
        import torch.nn.functional as F

        groups = [(context[:-1], [[context[-1], *cont[:-1]] for cont in conts])
                  for context, conts in zip(contexts, choices, strict=True)]
        tree = build_tree_rows(groups, self._pad_id())
        ids, mask, positions = tree.input_ids, tree.attention_mask, tree.position_ids
        rows = torch.tensor([tree.group_rows[g] for g, spans in enumerate(tree.branch_columns)
                             for span in spans for _ in span], dtype=torch.long)
        cols = torch.tensor([c for spans in tree.branch_columns for span in spans for c in span],
                            dtype=torch.long)
        logits = self._selected_logits(ids, mask, positions, rows, cols)
        self.shared_stats["forward_tokens"] += ids.numel()
        logprobs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
        answers: list[list[tuple[float, bool]]] = []
        at = 0
        for conts in choices:
            found = []
            for cont in conts:
                part = logprobs[at:at + len(cont)]
                target = torch.tensor(cont, dtype=torch.long, device=part.device)
                greedy = bool((part.argmax(dim=-1) == target).all())
                picked = torch.gather(part, 1, target.unsqueeze(-1)).squeeze(-1)
                found.append((float(picked.sum()), greedy))
                at += len(cont)
            answers.append(found)
        return answers

    def _selected_logits(self, ids: Any, mask: Any, positions: Any, rows: Any, cols: Any
                         ) -> Any:
        """Logits at (rows, cols) only: the decoder stack, then the LM head on those positions
        (a plain head); other heads (logit scaling, soft-capping) run the whole model."""
        import torch

        from cream_plugin.forward.logprobs import plain_head

        device = self.device
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device),
                  "position_ids": positions.to(device), "use_cache": False}
        with torch.no_grad(), torch.autocast(
            device_type=self.device.type, dtype=self.mixed_precision_dtype,
            enabled=self.mixed_precision_dtype is not None,
        ):
            if plain_head(self.model):
                hidden = self.model.base_model(**inputs).last_hidden_state
                picked = hidden[rows.to(device), cols.to(device)]
                return self.model.get_output_embeddings()(picked)
            return self.model(**inputs).logits[rows.to(device), cols.to(device)]

