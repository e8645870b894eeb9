"""The report's opening: at most three plain sentences (what improved, what did not, what to
watch) and a glossary, written from the summary's findings so a newcomer reads the result before
the tables. Deterministic: the same Evidence always gives the same words."""

from __future__ import annotations

from cream_plugin.instruments.evidence import Evidence
from cream_plugin.instruments.summary import findings
from cream_plugin.instruments.verdicts import (
    NOT_SIGNIFICANT,
    SIGNIFICANT,
    UNMEASURED,
    Finding,
)

GLOSSARY = {
    "M_t": "the model after t rounds: M0 the base model, M1 after supervised fine-tuning (SFT), "
           "M2, M3, ... each trained on preference pairs it labelled itself.",
    "C": "the consistency rate in [0, 1]: how much M_t's and M_(t-1)'s rankings of the same "
         "responses agree (Kendall's tau mapped to [0, 1]); CREAM trusts a label in proportion "
         "to C.",
    "KL": "Kullback-Leibler divergence between two consecutive models' next-token "
          "distributions, per token in nats: how far training moved the model (0 = not at all).",
    "AUC": "area under the ROC curve: the chance that a randomly chosen right label has a higher "
           "score than a randomly chosen wrong one (0.5 = no information).",
    "label accuracy": "of the preference pairs whose two responses differ in correctness, the "
                      "share where the reward picked the correct one (50% = a coin flip).",
    "pool accuracy": "the share of the model's own sampled responses that match the gold "
                     "answer.",
    "MDE": "minimum detectable effect: the smallest true difference the test would find 80% of "
           "the time at this sample size; a non-significant result rules out only differences "
           "larger than it.",
}


def _names(found: list[Finding], limit: int = 3) -> str:
    more = f"; and {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(f.short for f in found[:limit]) + more


def _worth_watching(f: Finding) -> bool:
    """Significant warning signs, and reward labels no better than (or worse than) chance."""
    if f.topic == "watch":
        return f.kind == SIGNIFICANT
    return f.topic == "labels" and f.kind in (SIGNIFICANT, NOT_SIGNIFICANT) and f.direction <= 0


def _watch_rank(f: Finding) -> int:
    """A length collapse first, then reward labels, then biases."""
    return 0 if "less than half" in f.short else 1 if f.topic == "labels" else 2


def _watch_text(watch: list[Finding]) -> str:
    """The warning signs in plain words, one clause per kind, each with its first example."""
    clauses = []
    collapse = [f for f in watch if "less than half" in f.short]
    if collapse:
        clauses.append(f"the trained model answers in less than half the length "
                       f"({collapse[0].short.split(':')[0]}"
                       f"{f' and {len(collapse) - 1} more' if len(collapse) > 1 else ''})")
    labels = [f for f in watch if f.topic == "labels"]
    if labels:
        worse = [f for f in labels if f.direction < 0]
        what = "worse than" if len(worse) == len(labels) else "no better than"
        clauses.append(f"the self-assigned reward labels were {what} a coin flip in "
                       f"{len(labels)} measurement(s) (e.g. {labels[0].short})")
    biases = [f for f in watch if f.topic == "watch" and f not in collapse]
    if biases:
        clauses.append(f"{len(biases)} significant reward bias(es) (e.g. {biases[0].short})")
    return "; ".join(clauses[:2])


def bottom_line(evidence: Evidence) -> list[str]:
    """Up to three sentences: what improved, what did not (or got worse), what to watch."""
    found = findings(evidence)
    outcomes = [f for f in found if f.topic == "outcome" and f.kind != UNMEASURED]
    up = [f for f in outcomes if f.kind == SIGNIFICANT and f.direction > 0]
    down = [f for f in outcomes if f.kind == SIGNIFICANT and f.direction < 0]
    flat = [f for f in outcomes if f.kind != SIGNIFICANT]
    watch = sorted((f for f in found if _worth_watching(f)), key=_watch_rank)
    out = []
    if up:
        out.append(f"Improved, beyond chance: {_names(up)}.")
    elif outcomes:
        out.append("Nothing measurably improved: no benchmark or pool-accuracy difference "
                   "between models was significant.")
    if down:
        out.append(f"Got worse, beyond chance: {_names(down)}.")
    elif flat and up:
        out.append(f"{len(flat)} other comparison(s) showed no significant difference; each "
                   "states the smallest difference its sample could have detected.")
    elif flat:
        out.append("Read each comparison's minimum detectable effect: at these sample sizes "
                   "only large differences could have been seen.")
    if watch:
        out.append(f"To watch: {_watch_text(watch)}.")
    elif not out:
        out.append("No instrument produced a tested figure for this run.")
    return out[:3]


def render_opening(evidence: Evidence, level: int = 2) -> str:
    """The bottom line and the glossary, as Markdown."""
    h = "#" * level
    terms = "\n".join(f"- **{term}**: {text}" for term, text in GLOSSARY.items())
    return "\n".join([f"{h} Bottom line", "", " ".join(bottom_line(evidence)), "",
                      f"{h} Glossary", "", terms, ""])
