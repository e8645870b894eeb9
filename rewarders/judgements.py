"""Several sampled judgements of each response, as texts with a score each (Meta-Rewarding).

Meta-Rewarding needs judgements as *texts*: the meta-judge compares two of them, and the
preferred one is a training target of the judging role. The rubric judge
(:mod:`cream_plugin.rewarders.judge`) samples ``samples`` judgements of every response with
the rubric prompt. How a judgement gets its score is the ``mode``:

- ``justify-probability`` (default): each sampled text is cut before any verdict it wrote
  itself, ``Score: `` is forced after it, and the score is the expected points of the next
  token (as the judge's probability modes); the judgement text used for training is the cut
  text plus ``Score: <most likely points>``, so a judgement always ends with a verdict. At
  135M the judge never writes one itself (docs/judge.md), so this is the mode that forms pairs.
- ``generate`` (the paper's): the text must end with ``Score: N``; a judgement without one is
  NaN, counted in ``unparsed_judgements``, and left out of the average and of the battles.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cream_plugin.errors import ConfigError
from cream_plugin.plugins.interfaces import Prompt
from cream_plugin.rewarders.judge import (
    DEFAULT_SCORE_PREFIX,
    POINTS,
    JudgeRewarder,
    build_judge_prompt,
    parse_judgement,
)
from cream_plugin.rewarders.judge_probability import (
    cut_justification,
    score_distribution,
    score_token_ids,
)
from cream_plugin.rewarders.judge_prompt import encode_chat

JUDGEMENT_MODES = ("justify-probability", "generate")


@dataclass
class Judgements:
    """For P prompts x K responses, N judgements each: texts, scores (NaN: unparsed), counts."""

    texts: list[list[list[str]]]
    scores: np.ndarray
    judge_prompts: list[list[list[dict[str, str]]]]
    counts: Counter[str] = field(default_factory=Counter)
    valid_mass: np.ndarray | None = None
    """(P, K, N) next-token mass on the score tokens (the probability mode only)."""

    def response_scores(self) -> np.ndarray:
        """(P, K) mean score of each response over its scored judgements (NaN with none)."""
        out = np.full(self.scores.shape[:2], np.nan)
        scored = np.isfinite(self.scores)
        any_scored = scored.any(axis=2)
        totals = np.where(scored, self.scores, 0.0).sum(axis=2)
        out[any_scored] = totals[any_scored] / scored.sum(axis=2)[any_scored]
        return out


class JudgementSampler:
    """Samples ``samples`` judgements of every response with the model as its own judge."""

    def __init__(self, model: Any, tokenizer: Any, *, samples: int = 3,
                 mode: str = "justify-probability", max_new_tokens: int = 64,
                 temperature: float = 0.8, top_p: float = 0.95, seed: int = 0,
                 batch_size: int = 8, score_prefix: str = DEFAULT_SCORE_PREFIX,
                 progress: bool = False) -> None:
        if mode not in JUDGEMENT_MODES:
            raise ConfigError(f"meta-rewarding judge_mode: expected one of "
                              f"{', '.join(JUDGEMENT_MODES)}, got {mode!r}")
        if samples < 2:
            raise ConfigError(f"meta-rewarding judgements: the meta-judge compares two "
                              f"judgements of a response, so at least 2 are needed, got {samples}")
        if temperature <= 0:
            raise ConfigError("meta-rewarding judge_temperature: must be > 0 (greedy "
                              "judgements of one response are identical)")
        self.tokenizer = tokenizer
        self.mode = mode
        self.score_prefix = score_prefix
        self.batch_size = batch_size
        self.progress = progress
        self.judge = JudgeRewarder(model, tokenizer, samples=samples, mode="generate",
                                   max_new_tokens=max_new_tokens, temperature=temperature,
                                   top_p=top_p, seed=seed, batch_size=batch_size,
                                   progress=progress)

    def sample(self, prompts: list[Prompt], responses: list[list[str]]) -> Judgements:
        """Judgements of every response of every prompt (each response judged on its own)."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} response lists")
        messages = [[build_judge_prompt(p, r, self.tokenizer) for r in row]
                    for p, row in zip(prompts, responses, strict=True)]
        flat = [m for row in messages for m in row]
        generated = self.judge.generate(
            [encode_chat(self.tokenizer, m, add_generation_prompt=True) for m in flat])
        counts: Counter[str] = Counter(judgements=sum(len(t) for t in generated),
                                       unparsed_judgements=0)
        flat_responses = [r for row in responses for r in row]
        mass = None
        if self.mode == "generate":
            texts = generated
            scores = [[np.nan if (v := parse_judgement(t, response=resp)) is None else v
                       for t in row] for row, resp in zip(generated, flat_responses, strict=True)]
            counts["unparsed_judgements"] = int(sum(np.isnan(s).sum() for s in scores))
        else:
            texts, scores, mass = self._read(flat, generated)
        shaped_texts: list[list[list[str]]] = []
        k = 0
        for row in responses:
            shaped_texts.append([list(texts[k + j]) for j in range(len(row))])
            k += len(row)
        n = self.judge.samples
        table = np.array(scores, dtype=np.float64).reshape(len(prompts), -1, n) if prompts \
            else np.zeros((0, 0, n))
        return Judgements(texts=shaped_texts, scores=table, judge_prompts=messages,
                          counts=counts,
                          valid_mass=None if mass is None else mass.reshape(table.shape))

    def _read(self, messages: list[list[dict[str, str]]], generated: list[list[str]],
              ) -> tuple[list[list[str]], list[list[float]], np.ndarray]:
        """Scores from the next token after each cut judgement + the forced prefix, and the
        judgement texts ending with the most likely verdict."""
        from cream_plugin.rewarders.next_token import next_token_log_probs

        spellings = score_token_ids(self.tokenizer, POINTS)
        token_ids = [t for ids in spellings for t in ids]
        sequences, group_of, cuts = [], [], []
        for job, (m, texts) in enumerate(zip(messages, generated, strict=True)):
            for text in texts:
                cut = cut_justification(text)
                lead = cut + "\n" if cut else ""
                cuts.append(lead)
                sequences.append(encode_chat(self.tokenizer, m, add_generation_prompt=True,
                                             suffix=lead + self.score_prefix))
                group_of.append(job)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        model = self.judge.model
        was_training = model.training
        model.eval()
        try:
            log_probs = next_token_log_probs(model, sequences, token_ids, int(pad_id),
                                             batch_size=self.batch_size, group_of=group_of,
                                             progress=self.progress)
        finally:
            model.train(was_training)
        dist = score_distribution(log_probs.numpy(), spellings, token_ids, POINTS)
        finals = [f"{lead}{self.score_prefix.rstrip()} {int(points)}"
                  for lead, points in zip(cuts, dist.argmax, strict=True)]
        n = self.judge.samples
        per_job = [finals[i:i + n] for i in range(0, len(finals), n)]
        scores = [dist.expected[i:i + n].tolist() for i in range(0, len(finals), n)]
        return per_job, scores, dist.mass
