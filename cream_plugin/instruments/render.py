"""Markdown tables for each instrument's report section, and the whole evidence block.

Every table shows a figure with its 95% interval and n; an undefined figure shows a dash and its
reason. Section texts say in one line how to read the table; docs/instruments.md has the formulas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cream_plugin.instruments import fmt
from cream_plugin.instruments.bottom_line import render_opening
from cream_plugin.instruments.estimate import Estimate
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
)
from cream_plugin.instruments.summary import render_summary


def table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A Markdown table; ``|`` inside cells is escaped."""
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([row(header), "|" + "---|" * len(header), *[row(r) for r in body]])


def cell(e: Estimate, scale: str = "num", digits: int | None = None) -> str:
    """The value, or a dash with the reason it is undefined."""
    if not e.defined:
        return f"{fmt.DASH} ({e.reason})" if e.reason else fmt.DASH
    return fmt.value(e, scale, digits)


def mde_cell(e: Estimate, scale: str = "num") -> str:
    """The minimum detectable effect (80% power, alpha 0.05) in the figure's scale, or a dash."""
    if e.mde != e.mde:
        return fmt.DASH
    return f"{100 * e.mde:.1f} points" if scale in ("pct", "points") else fmt.num(e.mde)


def render_pool_accuracy(rows: Sequence[PoolAccuracyRow]) -> str:
    body = [[r.method, str(r.iteration), cell(r.accuracy, "pct"),
             fmt.interval(r.accuracy, "pct"), str(r.accuracy.n)] for r in rows]
    return table(["method", "iteration", "pool accuracy", "95% CI (Wilson)", "n responses"], body)


def render_same_prompt_pool(rows: Sequence[SamePromptPoolRow]) -> str:
    body = [[r.method, f"M{r.iteration} → M{r.iteration + 1}", str(r.iteration + 1),
             cell(r.old, "pct"), cell(r.new, "pct"), cell(r.difference, "points"),
             fmt.interval(r.difference, "points"), str(r.difference.n), str(r.new.n)]
            for r in rows]
    return table(["method", "models", "prompts of iteration", "pool accuracy M_t",
                  "pool accuracy M_t+1", "mean per-prompt change (points)",
                  "95% CI (prompt bootstrap)", "n prompts", "n responses each"], body)


def render_reward_quality(rows: Sequence[RewardQualityRow]) -> str:
    body = [[r.method, str(r.iteration), r.reward, cell(r.accuracy, "pct"),
             fmt.interval(r.accuracy, "pct"), fmt.p_value(r.accuracy.p_value),
             mde_cell(r.accuracy, "pct"), str(r.accuracy.n), str(r.pairs), cell(r.auc),
             fmt.interval(r.auc), str(r.auc.n)] for r in rows]
    return table(["method", "iteration", "reward", "label accuracy", "95% CI (Wilson)",
                  "p vs 0.5", "MDE vs 0.5", "n (discordant pairs)", "pairs", "within-prompt AUC",
                  "95% CI (prompt bootstrap)", "n (correct, wrong) pairs"], body)


def render_informativeness(rows: Sequence[InformativenessRow]) -> str:
    body = [[r.method, str(r.iteration), cell(r.auc), fmt.interval(r.auc),
             fmt.p_value(r.auc.p_value), mde_cell(r.auc), cell(r.soft, "pct"),
             cell(r.hard, "pct"), cell(r.difference, "points"),
             fmt.interval(r.difference, "points"), fmt.p_value(r.difference.p_value),
             mde_cell(r.difference, "points"), str(r.hard.n)] for r in rows]
    return table(["method", "iteration", "AUC of C", "95% CI (DeLong)", "p vs 0.5", "MDE",
                  "soft acc.", "hard acc.", "soft − hard (points)", "95% CI (t)", "p", "MDE",
                  "n (pairs)"], body)


def render_c_bins(rows: Sequence[InformativenessRow]) -> str:
    body = []
    for r in rows:
        for i, b in enumerate(r.bins):
            closing = "]" if i == len(r.bins) - 1 else ")"
            body.append([r.method, str(r.iteration), f"[{b.low:g}, {b.high:g}{closing}",
                         cell(b.accuracy, "pct"), fmt.interval(b.accuracy, "pct"),
                         fmt.p_value(b.accuracy.p_value), mde_cell(b.accuracy, "pct"),
                         str(b.accuracy.n)])
    return table(["method", "iteration", "C bin", "label accuracy", "95% CI (Wilson)",
                  "p vs 0.5", "MDE vs 0.5", "n (pairs)"], body)


def render_biases(rows: Sequence[BiasRow]) -> str:
    body = [[r.method, str(r.iteration), r.reward, cell(r.length), fmt.interval(r.length),
             cell(r.duplicates), fmt.interval(r.duplicates), mde_cell(r.length),
             str(r.length.n)] for r in rows]
    return table(["method", "iteration", "reward", "ρ length", "95% CI", "ρ duplicates",
                  "95% CI", "MDE |ρ|", "n responses"], body)


def render_identical(rows: Sequence[IdenticalRow]) -> str:
    body = [[r.method, str(r.iteration), cell(r.share, "pct"), fmt.interval(r.share, "pct"),
             str(r.share.n)] for r in rows]
    return table(["method", "iteration", "prompts with all responses identical",
                  "95% CI (Wilson)", "n prompts"], body)


def render_movement(rows: Sequence[MovementRow]) -> str:
    body = []
    for r in rows:
        m = r.movement.current()
        body.append([r.method, str(r.iteration), m.kl_on or fmt.DASH,
                     cell(m.kl_forward, digits=4), fmt.interval(m.kl_forward, digits=4),
                     cell(m.kl_reverse, digits=4), fmt.interval(m.kl_reverse, digits=4),
                     cell(m.mc_forward, digits=4), cell(m.mc_reverse, digits=4),
                     cell(m.mean_abs_delta, digits=4),
                     cell(m.length_old, digits=1), cell(m.length_new, digits=1),
                     cell(r.margins), cell(r.accuracies, "pct")])
    return table(["method", "iteration", "exact KL on", "KL(new ‖ old) /token",
                  "95% CI (prompt bootstrap)", "KL(old ‖ new) /token", "95% CI",
                  "MC log-ratio new/old at T=0.8 /token", "MC log-ratio old/new /token",
                  "mean |Δ log p| /token", "tokens/response, old", "tokens/response, new",
                  "DPO margin", "reward accuracy"], body)


def render_comparisons(rows: Sequence[ComparisonRow]) -> str:
    body = []
    for r in rows:
        c = r.comparison
        binary = c.mcnemar is not None
        scale = "points" if binary else "num"
        d = c.difference
        body.append([r.task, r.metric, r.model_a, r.model_b,
                     fmt.pct(c.mean_a) if binary else fmt.num(c.mean_a),
                     fmt.pct(c.mean_b) if binary else fmt.num(c.mean_b),
                     cell(d, scale), fmt.interval(d, scale) if d.has_interval
                     else (d.reason or fmt.DASH), fmt.p_value(d.p_value), mde_cell(d, scale),
                     str(c.mcnemar.b_only) if c.mcnemar else fmt.DASH,
                     str(c.mcnemar.a_only) if c.mcnemar else fmt.DASH,
                     str(d.n)])
    return table(["task", "metric", "model a", "model b", "a", "b", "b − a", "95% CI",
                  "p (McNemar exact / Wilcoxon)", "MDE", "only b right", "only a right",
                  "n items"], body)


def render_seeds(rows: Sequence[SeedRow]) -> str:
    body = [[r.label, r.quantity, cell(r.estimate), fmt.interval(r.estimate),
             fmt.p_value(r.estimate.p_value), mde_cell(r.estimate), str(r.estimate.n),
             r.estimate.method + (f"; {r.estimate.reason}" if r.estimate.reason else "")]
            for r in rows]
    return table(["model", "quantity", "across seeds", "95% CI", "p vs reference", "MDE",
                  "seeds", "how"], body)


def render_seed_comparisons(rows: Sequence[SeedComparisonRow]) -> str:
    body = []
    for r in rows:
        binary = all("McNemar" in v.estimate.method for v in r.per_seed)
        scale = "points" if binary else "num"
        each = "; ".join(f"seed {v.seed}: {cell(v.estimate, scale)} "
                         f"({fmt.interval(v.estimate, scale)}, p {fmt.p_value(v.estimate.p_value)},"
                         f" MDE {mde_cell(v.estimate, scale)})" for v in r.per_seed)
        body.append([r.task, r.metric, r.model_a, r.model_b, cell(r.across, scale),
                     fmt.interval(r.across, scale), fmt.p_value(r.across.p_value),
                     mde_cell(r.across, scale), str(r.across.n), each])
    return table(["task", "metric", "model a", "model b", "mean b − a over seeds",
                  "95% CI (t over seeds)", "p (t over seeds)", "MDE", "seeds",
                  "per seed (within-seed, McNemar)"], body)


_GUIDE = {
    "pool": "Share of the iteration's sampled responses that match the gold answer (prompts "
            "with an answer key only): the policy's own accuracy, measured on many responses.",
    "same_pool": "M_t and M_t+1 answering the same prompts (iteration t+1's; M_t samples them "
                 "in a stage of its own with the same sampling seed): the policy's change in "
                 "accuracy, paired by prompt. Pool accuracies of different iterations above "
                 "come from different prompts and are not compared.",
    "quality": "Of the best-vs-worst pairs whose two responses differ in correctness, the share "
               "where the reward chose the correct one. 50% is a coin flip; below 50% the "
               "reward trains on reversed labels. The within-prompt AUC uses every pair of a "
               "correct and a wrong response to the same prompt (ties count 1/2; chance 0.5).",
    "informative": "Whether the consistency rate C tracks label correctness: AUC 0.5 means C "
                   "carries no information; soft − hard > 0 means CREAM's soft labels are "
                   "more accurate than the hard ones.",
    "bins": "Label accuracy of the discordant pairs grouped by their C: if C is informative, "
            "accuracy rises with C.",
    "biases": "Within-prompt Spearman correlation of each reward with response length and with "
              "how many copies of a response its prompt has (0 = no bias).",
    "identical": "Prompts whose N responses are all the same text give no pair.",
    "movement": "Exact per-token KL between consecutive models (nats, over the whole "
                "vocabulary at every position of sampled responses; 0 = did not move, never "
                "negative). The MC log-ratios are sampled-token log-prob differences on "
                "samples drawn at temperature/top-p: not KLs, and they may be negative. Then "
                "the mean response length of each model's samples (old: M_t on "
                "iteration t's prompts, new: M_t+1 on iteration t+1's), and the DPO log's mean "
                "margin and reward accuracy.",
    "comparisons": "Pairs of models on the same benchmark items of this run (within-seed): "
                   "McNemar's exact test for 0/1 scores with its exact conditional interval "
                   "(none when no item differs), else a paired t interval and the Wilcoxon "
                   "test; MDE is the smallest difference detectable at this n (80% power).",
    "seeds": "The same configuration under several seeds, the seeds as replicates: "
             "proportions on the logit scale (interval inside [0, 1]; the value is the "
             "seed-typical proportion), other figures as mean with a t-interval over seeds.",
    "seed_comparisons": "Headline comparisons made within each seed (McNemar on its items), "
                        "then the mean of the per-seed differences with a t-interval over "
                        "seeds; each has a forest plot below.",
}


def render_evidence(evidence: Evidence, plots: Mapping[str, str] | None = None,
                    level: int = 2) -> str:
    """The summary plus every non-empty instrument section; ``plots``: caption -> image path."""
    h = "#" * level
    parts = [render_opening(evidence, level), render_summary(evidence, heading=f"{h} Summary")]

    def section(title: str, guide: str, body: str) -> None:
        parts.extend([f"{h} {title}", "", _GUIDE[guide], "", body, ""])

    ev = evidence
    if ev.pool_accuracy:
        section("Pool accuracy", "pool", render_pool_accuracy(ev.pool_accuracy))
    if ev.same_prompt_pool:
        section("Pool accuracy on the same prompts", "same_pool",
                render_same_prompt_pool(ev.same_prompt_pool))
    if ev.reward_quality:
        section("Reward quality against gold answers", "quality",
                render_reward_quality(ev.reward_quality))
    if ev.informativeness:
        section("Is C informative?", "informative", render_informativeness(ev.informativeness))
        if any(r.bins for r in ev.informativeness):
            section("Label accuracy by C bin", "bins", render_c_bins(ev.informativeness))
    if ev.biases:
        section("Known biases", "biases", render_biases(ev.biases))
    if ev.identical:
        section("Identical responses", "identical", render_identical(ev.identical))
    if ev.movement:
        section("How far the policy moved", "movement", render_movement(ev.movement))
    for caption, path in (plots or {}).items():
        parts.extend([f"![{caption}]({path})", ""])
    if ev.comparisons:
        section("Paired comparisons on benchmark items", "comparisons",
                render_comparisons(ev.comparisons))
    if ev.seeds:
        section("Across seeds", "seeds", render_seeds(ev.seeds))
    if ev.seed_comparisons:
        section("Comparisons with seeds as replicates", "seed_comparisons",
                render_seed_comparisons(ev.seed_comparisons))
        for r in ev.seed_comparisons:
            if r.plot:
                parts.extend([f"![{r.task}: {r.model_b} vs {r.model_a}, per seed]({r.plot})", ""])
    return "\n".join(parts)
