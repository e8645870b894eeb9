"""Instruments that show whether self-rewarding is working (pure functions on plain arrays).

Reward quality against gold answers, whether the consistency rate C is informative, known reward
biases, how far the policy moved, paired tests between models, aggregation across seeds, and the
report's Markdown sections with a bottom line and a plain-language summary; the statistics
library (exact McNemar, DeLong AUCs, Holm, minimum detectable effects, seeds as replicates).
See docs/instruments.md.
"""

from __future__ import annotations

from cream_plugin.instruments.biases import (
    all_identical_share,
    duplicate_counts,
    mean_prompt_spearman,
    within_prompt_spearman,
)
from cream_plugin.instruments.bottom_line import bottom_line, render_opening
from cream_plugin.instruments.cluster_bootstrap import cluster_ratio
from cream_plugin.instruments.collect import compare_models, iteration_evidence
from cream_plugin.instruments.estimate import Estimate, undefined
from cream_plugin.instruments.evidence import (
    BiasRow,
    ComparisonRow,
    Evidence,
    IdenticalRow,
    InformativenessRow,
    MovementRow,
    PoolAccuracyRow,
    RewardQualityRow,
    SamePromptPoolRow,
    SeedComparisonRow,
    SeedRow,
    SeedValue,
)
from cream_plugin.instruments.forest import forest_plot
from cream_plugin.instruments.informativeness import (
    BinAccuracy,
    SoftLabelAccuracy,
    accuracy_by_c_bin,
    auc,
    auc_of_c,
    soft_label_accuracy,
)
from cream_plugin.instruments.intervals import (
    binomial_test,
    proportion,
    proportion_difference,
    t_interval,
    wilson_interval,
)
from cream_plugin.instruments.movement import (
    Movement,
    exact_per_token_kl,
    mc_log_ratio,
    mean_abs_logp_change,
    policy_movement,
)
from cream_plugin.instruments.multiple import holm
from cream_plugin.instruments.paired import (
    McNemar,
    PairedComparison,
    compare_items,
    item_scores,
    mcnemar_difference,
    mcnemar_exact,
    paired_bootstrap,
    paired_continuous,
)
from cream_plugin.instruments.power import (
    mde_auc,
    mde_correlation,
    mde_mean,
    mde_paired_binary,
    mde_proportion,
    mde_two_proportions,
)
from cream_plugin.instruments.render import render_evidence
from cream_plugin.instruments.reward_quality import (
    LabelAccuracy,
    PairLabels,
    answer_key_correctness,
    best_worst,
    label_accuracy,
    pair_labels,
    pool_accuracy,
    random_rewards,
    same_prompt_pool,
    within_prompt_auc,
)
from cream_plugin.instruments.roc import compare_aucs, delong_auc
from cream_plugin.instruments.seeds import (
    across_seeds,
    aggregate_seeds,
    proportion_across_seeds,
)
from cream_plugin.instruments.summary import render_summary
from cream_plugin.instruments.train_log import (
    Curve,
    curve_mean,
    load_train_log,
    plot_train_curves,
    train_curves,
)

__all__ = [
    "BiasRow",
    "BinAccuracy",
    "ComparisonRow",
    "Curve",
    "Estimate",
    "Evidence",
    "IdenticalRow",
    "InformativenessRow",
    "LabelAccuracy",
    "McNemar",
    "Movement",
    "MovementRow",
    "PairLabels",
    "PairedComparison",
    "PoolAccuracyRow",
    "RewardQualityRow",
    "SamePromptPoolRow",
    "SeedComparisonRow",
    "SeedRow",
    "SeedValue",
    "SoftLabelAccuracy",
    "accuracy_by_c_bin",
    "across_seeds",
    "aggregate_seeds",
    "all_identical_share",
    "answer_key_correctness",
    "auc",
    "auc_of_c",
    "best_worst",
    "binomial_test",
    "bottom_line",
    "cluster_ratio",
    "compare_aucs",
    "compare_items",
    "compare_models",
    "curve_mean",
    "delong_auc",
    "duplicate_counts",
    "exact_per_token_kl",
    "forest_plot",
    "holm",
    "item_scores",
    "iteration_evidence",
    "label_accuracy",
    "load_train_log",
    "mc_log_ratio",
    "mcnemar_difference",
    "mcnemar_exact",
    "mde_auc",
    "mde_correlation",
    "mde_mean",
    "mde_paired_binary",
    "mde_proportion",
    "mde_two_proportions",
    "mean_abs_logp_change",
    "mean_prompt_spearman",
    "pair_labels",
    "paired_bootstrap",
    "paired_continuous",
    "plot_train_curves",
    "policy_movement",
    "pool_accuracy",
    "proportion",
    "proportion_across_seeds",
    "proportion_difference",
    "random_rewards",
    "render_evidence",
    "render_opening",
    "render_summary",
    "same_prompt_pool",
    "soft_label_accuracy",
    "t_interval",
    "train_curves",
    "undefined",
    "wilson_interval",
    "within_prompt_auc",
    "within_prompt_spearman",
]
