"""The report's "Rewards and pairs" section: what each iteration's reward produced, from manifests.

A reward that forms no preference pair makes M_(t+1) a silent copy of M_t, and a reward that
does not depend on the model makes CREAM's C equal 1 everywhere (CREAM = CREAM w/o RC); both are
called out at the top of the section, before any table. The table gives, per method and
iteration, the responses scored, the judge's unparsed verdicts, the probability-scored judge's
mean valid-token mass, the prompts whose best and worst responses tie, and the pairs formed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cream_plugin.loop.artifacts import read_manifests


def _fmt_mass(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2g}"


def reward_rows(run_dir: Path) -> list[dict[str, Any]]:
    """One row per pairs stage: its method, iteration, pair counts and its reward's counts."""
    manifests = read_manifests(run_dir)
    by_digest = {m.get("digest"): (name, m) for name, m in manifests.items()
                 if m.get("step") == "reward"}
    rows = []
    for name, m in manifests.items():
        if m.get("step") != "pairs":
            continue
        reward_name, reward = by_digest.get((m.get("inputs") or {}).get("rewards"), ("", {}))
        counts = reward.get("counts") or {}
        pairs = m.get("pairs")
        if pairs is None and isinstance(m.get("prompts"), int):  # a folder from before "pairs"
            pairs = m["prompts"] - int(m.get("skipped") or 0)
        rows.append({
            "method": m.get("method"), "iteration": m.get("iteration", 0),
            "reward": m.get("reward") or (  # a method's own pairs stage names its rule
                reward_name.rsplit("/", 1)[-1].removeprefix("rewards-") if reward_name
                else "implicit" if "logps" in (m.get("inputs") or {}) else "-"),
            "prompts": m.get("prompts"), "pairs": pairs,
            "no_pairs": bool(m.get("no_pairs")) or pairs == 0,
            "constant_consistency": bool(m.get("constant_consistency")),
            "scored": counts.get("scored"), "unparsed": counts.get("unparsed_judgements"),
            "judgements": counts.get("judgements"), "all_tied": counts.get("prompts_all_tied"),
            "mean_valid_mass": reward.get("mean_valid_mass"), "stage": name,
        })
    return sorted(rows, key=lambda r: (str(r["method"]), int(r["iteration"])))


def callouts(rows: list[dict[str, Any]]) -> list[str]:
    """The lines a reader must not miss: iterations that trained on no pair (a copy of the
    model) and methods whose C is 1 for every pair (cream = cream-no-rc)."""
    lines = []
    for r in rows:
        if r["no_pairs"]:
            lines.append(f"- **No pairs: {r['method']} iteration {r['iteration']}** formed no "
                         f"preference pair from {r['prompts']} prompts, so M{r['iteration'] + 1} "
                         f"is a copy of M{r['iteration']} (training.require_pairs=true makes "
                         "this an error).")
    for method in dict.fromkeys(r["method"] for r in rows if r["constant_consistency"]):
        lines.append(f"- **{method}: C = 1 for every pair.** Its reward does not depend on the "
                     "model, so M_t and M_(t-1) rank the responses alike and this method "
                     "trained exactly as its unregularised ablation (cream = cream-no-rc).")
    return lines


def rewards_section(run_dir: Path) -> str | None:
    """Markdown for the section (None when the run has no pairs stage yet)."""
    rows = reward_rows(run_dir)
    if not rows:
        return None
    lines = ["## Rewards and pairs", "", *callouts(rows)]
    if len(lines) > 2:
        lines.append("")
    lines += [
        "Per method and iteration: responses scored; judge verdicts that could not be parsed "
        "(generate-and-parse judge); the probability-scored judge's mean probability mass on "
        "the score tokens (the share of its next-token distribution the score was read from); "
        "prompts whose best and worst response tie (no pair); pairs formed.",
        "",
        "| method | iteration | reward | scored | unparsed verdicts | mean valid mass "
        "| prompts tied | pairs / prompts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        unparsed = "-" if r["unparsed"] is None else f"{r['unparsed']} / {r['judgements']}"
        lines.append(
            f"| {r['method']} | {r['iteration']} | {r['reward']} | "
            f"{'-' if r['scored'] is None else r['scored']} | {unparsed} | "
            f"{_fmt_mass(r['mean_valid_mass'])} | "
            f"{'-' if r['all_tied'] is None else r['all_tied']} | "
            f"{r['pairs']} / {r['prompts']} |")
    return "\n".join(lines)
