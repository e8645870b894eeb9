"""One call per (method, iteration): every sample-level instrument from plain arrays.

For the pipeline stage and for TRL users with their own samples: give the correctness table, the
rewards that ranked (or could rank) the samples, and optionally C, lengths and texts; get the
Evidence rows of that iteration (pool accuracy, label accuracy per reward plus a seeded random
baseline, C informativeness, biases, identical responses). Movement, comparisons and seeds come
from other data and are added by their own functions.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.instruments.biases import (
    all_identical_share,
    duplicate_counts,
    within_prompt_spearman,
)
from cream_plugin.instruments.estimate import undefined
from cream_plugin.instruments.evidence import (
    BiasRow,
    ComparisonRow,
    Evidence,
    IdenticalRow,
    InformativenessRow,
    PoolAccuracyRow,
    RewardQualityRow,
)
from cream_plugin.instruments.informativeness import (
    DEFAULT_BINS,
    accuracy_by_c_bin,
    auc_of_c,
    soft_label_accuracy,
)
from cream_plugin.instruments.paired import compare_items
from cream_plugin.instruments.reward_quality import (
    as_table,
    label_accuracy,
    pool_accuracy,
    random_rewards,
    within_prompt_auc,
)

RANDOM = "random"


def iteration_evidence(
    method: str,
    iteration: int,
    correct: object,
    rewards: Mapping[str, object],
    *,
    pair_reward: str | None = None,
    consistency: object = None,
    lengths: object = None,
    responses: Sequence[Sequence[str]] | None = None,
    seed: int = 0,
    bins: Sequence[float] = DEFAULT_BINS,
) -> Evidence:
    """Evidence rows of one iteration; ``pair_reward`` names the reward that built the pairs.

    A ``"random"`` reward (seeded, scoring the same responses as ``pair_reward``) is added as the
    chance baseline unless ``rewards`` already has one. C informativeness needs ``consistency``
    and ``pair_reward``.
    """
    table = as_table(correct, "correct")
    if pair_reward is not None and pair_reward not in rewards:
        raise DataError(f"pair_reward {pair_reward!r} is not among the rewards "
                        f"({', '.join(rewards)})")
    tables = {name: as_table(r, f"rewards[{name!r}]", table.shape) for name, r in rewards.items()}
    if RANDOM not in tables:
        like = tables.get(pair_reward) if pair_reward else None
        tables[RANDOM] = random_rewards(table.shape, seed, like)
    ev = Evidence()
    ev.pool_accuracy.append(PoolAccuracyRow(method, iteration, pool_accuracy(table)))
    for name, values in tables.items():
        result = label_accuracy(values, table)
        ev.reward_quality.append(RewardQualityRow(
            method, iteration, name, result.accuracy, result.pairs, result.discordant_pairs,
            within_prompt_auc(values, table, seed=seed)))
    if consistency is not None and pair_reward is not None:
        pr = tables[pair_reward]
        soft = soft_label_accuracy(pr, table, consistency)
        ev.informativeness.append(InformativenessRow(
            method, iteration, auc_of_c(pr, table, consistency), soft.soft, soft.hard,
            soft.difference, accuracy_by_c_bin(pr, table, consistency, bins)))
    if lengths is not None or responses is not None:
        dup = duplicate_counts(responses) if responses is not None else None
        for name, values in tables.items():
            if name == RANDOM:
                continue
            ev.biases.append(BiasRow(
                method, iteration, name,
                within_prompt_spearman(values, lengths, seed=seed) if lengths is not None
                else undefined("no response lengths given"),
                within_prompt_spearman(values, dup, seed=seed) if dup is not None
                else undefined("no response texts given")))
    if responses is not None:
        ev.identical.append(IdenticalRow(method, iteration, all_identical_share(responses)))
    return ev


def compare_models(task: str, metric: str, scores: Mapping[str, Mapping[Any, float]]
                   ) -> list[ComparisonRow]:
    """Every pair of models on one task (``scores``: model label -> doc_id -> score).

    Pairs follow the mapping's order: for models listed a, b, c the rows are b vs a, c vs a,
    c vs b, so list the baseline first.
    """
    return [ComparisonRow(task, metric, a, b, compare_items(scores[a], scores[b]))
            for a, b in itertools.combinations(scores, 2)]
