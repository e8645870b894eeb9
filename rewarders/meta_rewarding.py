"""Meta-Rewarding's reward step: the model judges its responses several times, then meta-judges
two or more of its own judgements; and the pair step that turns both into DPO rows.

:func:`judge_rows` runs the model (actor scores from N sampled judgements per response; for
each prompt, the response whose judgements disagree most is meta-judged, every pair of its
judgements in both orders). :func:`meta_pairs` is model-free: position weights over all the
iteration's battles, judge pairs by Bradley-Terry strength, actor pairs by the length control.
The split lets a run change the pair settings (rho, the verdict rule) without judging again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from cream_plugin.errors import ConfigError
from cream_plugin.plugins.interfaces import Prompt
from cream_plugin.ranking.judge_battles import VERDICTS, Battles, most_uncertain, position_weights
from cream_plugin.ranking.length_control import DEFAULT_RHO, check_rho
from cream_plugin.ranking.meta_pairs import actor_pair_rows, judge_pair_rows
from cream_plugin.rewarders.judge import DEFAULT_SCORE_PREFIX
from cream_plugin.rewarders.judgements import JUDGEMENT_MODES, JudgementSampler
from cream_plugin.rewarders.meta_judge import DEFAULT_ANSWER_PREFIX, MetaJudge


@dataclass(frozen=True)
class MetaRewardingSettings:
    """The method's options (``method_options.meta-rewarding``), paper values where feasible
    (docs/meta-rewarding.md lists which are the paper's and which are ours)."""

    judgements: int = 3
    judge_mode: str = "justify-probability"
    judge_max_new_tokens: int = 64
    judge_temperature: float = 0.8
    judge_top_p: float = 0.95
    score_prefix: str = DEFAULT_SCORE_PREFIX
    meta_answer_prefix: str = DEFAULT_ANSWER_PREFIX
    meta_verdict: str = "probability"
    length_control_rho: float = DEFAULT_RHO
    judge_pairs: bool = True

    JUDGING = ("judgements", "judge_mode", "judge_max_new_tokens", "judge_temperature",
               "judge_top_p", "score_prefix", "meta_answer_prefix")
    """The options the model-running step reads (the rest only shape the pairs)."""

    def __post_init__(self) -> None:
        for name, choices in (("judge_mode", JUDGEMENT_MODES), ("meta_verdict", VERDICTS)):
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(f"method_options.meta-rewarding.{name}: expected one of "
                                  f"{', '.join(choices)}, got {value!r}")
        if self.judgements < 2:
            raise ConfigError("method_options.meta-rewarding.judgements: the meta-judge "
                              f"compares two judgements, so at least 2, got {self.judgements}")
        check_rho(self.length_control_rho)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MetaRewardingSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"method_options.meta-rewarding: unknown option(s) {unknown}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**dict(options))

    def part(self, names: Sequence[str]) -> dict[str, Any]:
        values = asdict(self)
        return {k: values[k] for k in names}


def judge_rows(model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]],
               settings: MetaRewardingSettings, *, seed: int, batch_size: int = 8,
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per sample row: each response's mean judge score (``rewards``, what the instruments
    read), its judgements and their scores, and the meta-judged response's battles; plus the
    counts and mean valid mass for the manifest."""
    prompts: list[Prompt] = [r["prompt"] for r in rows]
    responses = [list(r["responses"]) for r in rows]
    judged = JudgementSampler(
        model, tokenizer, samples=settings.judgements, mode=settings.judge_mode,
        max_new_tokens=settings.judge_max_new_tokens, temperature=settings.judge_temperature,
        top_p=settings.judge_top_p, seed=seed, batch_size=batch_size,
        score_prefix=settings.score_prefix).sample(prompts, responses)
    picked = {i: k for i in range(len(rows))
              if (k := most_uncertain(judged.scores[i])) is not None}
    scored_texts = {i: [t for t, s in zip(judged.texts[i][k], judged.scores[i][k], strict=True)
                        if np.isfinite(s)] for i, k in picked.items()}
    order = sorted(picked)
    battles = MetaJudge(model, tokenizer, batch_size=batch_size,
                        answer_prefix=settings.meta_answer_prefix).battles(
        [prompts[i] for i in order], [responses[i][picked[i]] for i in order],
        [scored_texts[i] for i in order])
    by_prompt = dict(zip(order, battles, strict=True))
    means = judged.response_scores()
    out = []
    for i, row in enumerate(rows):
        item: dict[str, Any] = {
            "prompt_id": row["prompt_id"], "rewards": means[i].tolist(),
            "judgements": judged.texts[i], "judgement_scores": judged.scores[i].tolist(),
            "meta_response": picked.get(i),
            "meta_judgements": scored_texts.get(i, []),
            "meta_judge_prompt": judged.judge_prompts[i][picked[i]] if i in picked else [],
            "first_wins": by_prompt[i].first_wins.tolist() if i in by_prompt else [],
        }
        if judged.valid_mass is not None:
            item["valid_mass"] = judged.valid_mass[i].mean(axis=1).tolist()
        out.append(item)
    counts = Counter(judged.counts)
    counts["scored"] = int(np.isfinite(means).sum())
    counts["unscored_responses"] = int(np.isnan(means).sum())
    counts["meta_judged_prompts"] = len(picked)
    counts["meta_battles"] = int(sum(np.isfinite(b.first_wins).sum() for b in battles))
    counts["prompts_all_tied"] = int(sum(
        1 for row in means if np.isfinite(row).sum() >= 2
        and np.nanmax(row) == np.nanmin(row)))
    manifest: dict[str, Any] = {"counts": dict(counts)}
    if judged.valid_mass is not None and judged.valid_mass.size:
        manifest["mean_valid_mass"] = float(judged.valid_mass.mean())
    return out, manifest


def meta_pairs(samples: Sequence[Mapping[str, Any]], judged: Sequence[Mapping[str, Any]],
               settings: MetaRewardingSettings) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Actor pairs and (with ``judge_pairs``) judge pairs from the judged rows, joined to the
    sample rows by prompt id; the manifest counts both and the position weights."""
    by_id = {str(r["prompt_id"]): r for r in judged}
    missing = [str(s["prompt_id"]) for s in samples if str(s["prompt_id"]) not in by_id]
    if missing:
        raise ConfigError(f"meta-rewarding pairs: no judgements for prompt id(s) {missing[:5]}")
    rows = [by_id[str(s["prompt_id"])] for s in samples]
    ids = [str(s["prompt_id"]) for s in samples]
    prompts = [s["prompt"] for s in samples]
    responses = [list(s["responses"]) for s in samples]
    scores = np.array([r["rewards"] for r in rows], dtype=np.float64).reshape(len(rows), -1)
    stats: Counter[str] = Counter()
    pairs = actor_pair_rows(ids, prompts, responses, scores, settings.length_control_rho, stats)
    weights = (0.5, 0.5)
    if settings.judge_pairs:
        picked = {i: (int(r["meta_response"]), Battles(np.array(r["first_wins"], dtype=float)))
                  for i, r in enumerate(rows) if r.get("meta_response") is not None}
        weights = position_weights([b for _, b in picked.values()], settings.meta_verdict)
        texts: list[list[list[str]]] = [[[] for _ in resp] for resp in responses]
        judge_prompts: list[list[list[dict[str, str]]]] = [[[] for _ in resp]
                                                           for resp in responses]
        for i, (k, _) in picked.items():
            texts[i][k] = list(rows[i]["meta_judgements"])
            judge_prompts[i][k] = list(rows[i]["meta_judge_prompt"])
        pairs += judge_pair_rows(ids, prompts, picked, texts, judge_prompts, weights,
                                 settings.meta_verdict, stats)
    manifest: dict[str, Any] = {
        "prompts": len(samples), "pairs": len(pairs),
        "actor_pairs": stats["actor_pairs"], "judge_pairs": stats["judge_pairs"],
        "skipped": len(samples) - stats["actor_pairs"],
        "position_weights": list(weights), "counts": dict(stats)}
    return pairs, manifest
