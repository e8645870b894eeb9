"""External rewards: a sequence-classification reward model and an answer key for benchmarks.

* :class:`RewardModelRewarder` (registered as ``oracle``) loads any
  ``AutoModelForSequenceClassification`` checkpoint with its own tokenizer and chat template and
  scores (prompt, response) conversations in length-sorted batches.
* :class:`AnswerKeyRewarder` (registered as ``answer-key``) scores a response 1.0 when its final
  answer matches the gold answer of its prompt, else 0.0: a real external signal that works
  offline for prompts drawn from benchmark train splits. The gold answer comes per prompt as a
  *reference* string: the samples file's optional ``reference`` field (``cream reward`` passes it
  to every rewarder whose ``score`` takes ``references``), or ``references=`` given directly.
  A reference is ``"choice:<label>"`` (ARC / OpenBookQA answer key), ``"number:<value>"`` (GSM8K),
  a GSM8K answer text ending in ``#### <value>``, a bare letter (a choice) or a bare number.
  :func:`reference_for` builds it from a benchmark row.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from cream_plugin.plugins.interfaces import Prompt, RewardResult

# ---------------------------------------------------------------- answer key

_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
_ANSWER_LETTER = re.compile(r"(?i:answer)\s*(?:(?i:is)\s*)?[:\-]?\s*\(?([A-Z])\b")
_LEADING_LETTER = re.compile(r"^\s*\(?([A-Z])(?:[\).:]|\s*$)")
_PAREN_LETTER = re.compile(r"\(([A-Z])\)")
_HASH_NUMBER = re.compile(rf"####\s*({_NUMBER})")
_ANSWER_NUMBER = re.compile(rf"(?i:answer)\s*(?:(?i:is)\s*)?[:\-]?\s*({_NUMBER})")
_ANY_NUMBER = re.compile(_NUMBER)


def reference_for(source: str, row: dict[str, Any]) -> str:
    """The reference string of a benchmark row (``arc_*``, ``openbookqa``, ``gsm8k``)."""
    if source in ("arc_easy", "arc_challenge", "openbookqa"):
        return f"choice:{row['answerKey']}"
    if source == "gsm8k":
        match = _HASH_NUMBER.search(str(row["answer"]))
        if not match:
            raise ValueError(f"gsm8k answer has no '#### N' line: {row['answer']!r:.80}")
        return f"number:{_clean_number(match.group(1))}"
    raise ValueError(f"no answer key for source {source!r}; known: arc_easy, arc_challenge, "
                     "openbookqa, gsm8k")


def _clean_number(text: str) -> str:
    return text.replace(",", "").replace("$", "").rstrip(".")


def parse_reference(reference: str) -> tuple[str, str]:
    """``(kind, gold)`` with kind ``"choice"`` or ``"number"``."""
    text = reference.strip()
    if text.startswith("choice:"):
        return "choice", text[len("choice:"):].strip().upper()
    if text.startswith("number:"):
        return "number", _clean_number(text[len("number:"):].strip())
    match = _HASH_NUMBER.search(text)
    if match:
        return "number", _clean_number(match.group(1))
    if re.fullmatch(r"[A-Za-z]", text):
        return "choice", text.upper()
    if re.fullmatch(_NUMBER, text):
        return "number", _clean_number(text)
    raise ValueError(
        f"reference {reference!r} is neither 'choice:X', 'number:N', a letter nor a number")


def extract_choice(response: str) -> str | None:
    """The letter a response picks: its last "answer is X", else a leading "X." or "(X)"."""
    found = _ANSWER_LETTER.findall(response)
    if found:
        return str(found[-1])
    match = _LEADING_LETTER.match(response) or _PAREN_LETTER.search(response)
    return match.group(1) if match else None


def extract_number(response: str) -> str | None:
    """The final number of a response: "#### N", else the last "answer is N", else the last one."""
    for pattern in (_HASH_NUMBER, _ANSWER_NUMBER, _ANY_NUMBER):
        found = pattern.findall(response)
        if found:
            return _clean_number(str(found[-1]))
    return None


def _same_number(a: str, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
    except ValueError:
        return False


class AnswerKeyRewarder:
    """1.0 for a response whose final answer matches its prompt's reference, else 0.0."""

    def __init__(self, references: Sequence[str | None] | None = None) -> None:
        self.references = list(references) if references is not None else None

    def score(
        self,
        prompts: list[Prompt],
        responses: list[list[str]],
        references: Sequence[str | None] | None = None,
    ) -> RewardResult:
        refs = list(references) if references is not None else self.references
        if refs is None:
            raise ValueError(
                "the answer-key rewarder needs a gold answer per prompt: give the samples rows a "
                "'reference' field ('choice:B', 'number:72', ...) or pass references=")
        if len(refs) != len(prompts) or len(responses) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts, {len(responses)} response lists and "
                             f"{len(refs)} references")
        n = len(responses[0]) if responses else 0
        rewards = np.full((len(prompts), n), np.nan)
        counts: Counter[str] = Counter()
        for i, (row, ref) in enumerate(zip(responses, refs, strict=True)):
            if len(row) != n:
                raise ValueError(f"prompt {i}: expected {n} responses, got {len(row)}")
            if ref is None or not str(ref).strip():
                counts["no_reference"] += n
                continue
            try:
                kind, gold = parse_reference(str(ref))
            except ValueError as exc:
                raise ValueError(f"prompt {i}: {exc}") from None
            for j, response in enumerate(row):
                answer = extract_choice(response) if kind == "choice" else extract_number(response)
                if answer is None:
                    counts["no_answer"] += 1
                    rewards[i, j] = 0.0
                    continue
                correct = answer == gold if kind == "choice" else _same_number(answer, gold)
                rewards[i, j] = 1.0 if correct else 0.0
                counts["correct" if correct else "wrong"] += 1
        return RewardResult(rewards, counts)


# ---------------------------------------------------------------- reward model


class RewardModelRewarder:
    """Scores with an external ``AutoModelForSequenceClassification`` reward model (first logit)."""

    def __init__(
        self,
        path: str,
        *,
        batch_size: int = 8,
        max_length: int | None = None,
        device: str = "auto",
        dtype: str = "float32",
        progress: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from cream_plugin.errors import ModelLoadError
        from cream_plugin.forward.models import pick_device, torch_dtype

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code)
        except OSError as exc:
            raise ModelLoadError(f"could not load reward model {path!r}: {exc}") from exc
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(pick_device(device)).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.progress = progress

    def render(self, prompt: Prompt, response: str) -> list[int]:
        """Token ids of one (prompt, response) conversation in the reward model's own format."""
        tok = self.tokenizer
        encoded: Any
        if getattr(tok, "chat_template", None):
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            conversation = [*messages, {"role": "assistant", "content": response}]
            encoded = tok.apply_chat_template(conversation, tokenize=True, return_dict=True)
        else:
            text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
            encoded = tok(text=f"{text}\n\n{response}")
        ids = [int(i) for i in encoded["input_ids"]]
        return ids[-self.max_length:] if self.max_length else ids

    def score(self, prompts: list[Prompt], responses: list[list[str]]) -> RewardResult:
        import torch
        from tqdm.auto import tqdm

        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} response lists")
        n = len(responses[0]) if responses else 0
        seqs: list[list[int]] = []
        for i, (prompt, row) in enumerate(zip(prompts, responses, strict=True)):
            if len(row) != n:
                raise ValueError(f"prompt {i}: expected {n} responses, got {len(row)}")
            seqs.extend(self.render(prompt, r) for r in row)
        values = np.full(len(seqs), np.nan)
        order = sorted(range(len(seqs)), key=lambda k: -len(seqs[k]))
        batches = [order[k:k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        pad_id = int(self.model.config.pad_token_id)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for batch in tqdm(batches, desc="reward model", unit="batch",
                              disable=not self.progress):
                width = len(seqs[batch[0]])
                ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for r, k in enumerate(batch):  # left padding: the last token is always real
                    ids[r, width - len(seqs[k]):] = torch.tensor(seqs[k], dtype=torch.long)
                    mask[r, width - len(seqs[k]):] = 1
                # Explicit positions keep left padding harmless for absolute position embeddings.
                positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                    position_ids=positions.to(device)).logits
                values[batch] = logits[:, 0].float().cpu().numpy()
        rewards = values.reshape(len(prompts), n)
        return RewardResult(rewards, Counter(scored=int(np.isfinite(rewards).sum())))
