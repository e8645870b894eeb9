"""Why CREAM's first-iteration consistency comes out negative with the implicit reward: the
within-prompt rank agreement of r_t with r_{t-1}, next to the structural terms that can drive it.

Run:  python studies/anticorrelation.py RUN_DIR [RUN_DIR ...] [--out FILE.md]

RUN_DIR is a cream run folder (or a seeds folder, whose seed-* folders are read). Iteration 1
(M1's samples, shared by every method): r_1 = log pi_M1 - log pi_M0 (summed over response
tokens) against r_0 = M0's mean per-token log-likelihood, which is the paper's rule when no
reference exists. Iteration 2 (each implicit method's M2 samples): r_2 = log pi_M2 - log pi_M1
against r_1 = log pi_M1 - log pi_M0. Every statistic is a mean over prompts of a within-prompt
Kendall tau or a within-prompt (prompt-centred) regression slope. With one run the interval is a
t interval over its prompts; with several seeds each seed's mean over its prompts is one value
and the interval is a t interval over seeds (the seeds are the replicates: prompts of different
seeds are not pooled as if they were independent).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from scipy import stats

from cream_plugin.forward.logprobs import SequenceLogProbs
from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.intervals import t_interval
from cream_plugin.loop.stages.logps import logps_table
from studies.cells import level, seed_level, within
from studies.folder import read_jsonl, stored


def read_logps(path: Path) -> SequenceLogProbs:
    """A log-prob stage's rows (or their packed ``.gz`` copy) as a (P, N) table."""
    return logps_table(read_jsonl(path))


def kendall_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall tau per prompt (row); NaN where a row is constant or has a NaN."""
    out = np.full(a.shape[0], np.nan)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() >= 2 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
            out[i] = stats.kendalltau(x[ok], y[ok]).statistic
    return out


def centred(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return x - np.nanmean(x, axis=1, keepdims=True)


def slope_rows(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per prompt, the least-squares slope of y on x (regression to the mean when < 1)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cx, cy = centred(x), centred(y)
        return np.nansum(cx * cy, axis=1) / np.nansum(cx * cx, axis=1)


Row = tuple[str, str, np.ndarray]


def iteration_one(run: Path) -> list[Row]:
    m0, m1 = (read_logps(run / "shared/iter1" / f"logps-{k}.jsonl") for k in ("M0", "M1"))
    r1, r0 = m1.sum - m0.sum, m0.mean
    length = m0.num_tokens.astype(float)
    return [
        ("tau(r_1, r_0): the paper's C statistic in iteration 1", "tau", kendall_rows(r1, r0)),
        ("tau(r_1, log pi_M0 summed): r_0 as a sum instead of a mean", "tau",
         kendall_rows(r1, m0.sum)),
        ("tau(r_1, length)", "tau", kendall_rows(r1, length)),
        ("tau(r_0, length)", "tau", kendall_rows(r0, length)),
        ("mean abs(r_1) per token: how far SFT (M0 -> M1) moved (nats)", "size",
         per_token_size(r1, length)),
        ("within-prompt sd of r_0 (M0's mean log-likelihood, nats per token)", "size",
         np.nanstd(r0, axis=1)),
        ("slope of log pi_M1 on log pi_M0 (sums, within prompt)", "slope",
         slope_rows(m1.sum, m0.sum)),
        ("slope of mean log pi_M1 on mean log pi_M0 (within prompt)", "slope",
         slope_rows(m1.mean, m0.mean)),
    ]


def iteration_two(run: Path, method: str) -> list[Row]:
    folder = run / method / "iter2"
    m2 = read_logps(folder / f"logps-{method}-M2.jsonl")
    m1, m0 = (read_logps(folder / f"logps-{k}.jsonl") for k in ("M1", "M0"))
    r2, r1 = m2.sum - m1.sum, m1.sum - m0.sum
    length = m1.num_tokens.astype(float)
    return [
        ("tau(r_2, r_1): the C statistic in iteration 2", "tau", kendall_rows(r2, r1)),
        ("tau(r_2, length)", "tau", kendall_rows(r2, length)),
        ("tau(r_1, length)", "tau", kendall_rows(r1, length)),
        ("mean abs(r_2) per token: how far M1 -> M2 moved (nats)", "size",
         per_token_size(r2, length)),
        ("slope of log pi_M2 on log pi_M1 (sums, within prompt)", "slope",
         slope_rows(m2.sum, m1.sum)),
    ]


def per_token_size(reward: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Per prompt, mean |reward| / tokens: the size of a log-ratio reward per token."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.abs(reward) / np.where(length > 0, length, np.nan), axis=1)


def runs_in(folder: Path) -> list[Path]:
    seeds = sorted(p for p in folder.glob("seed-*") if (p / "report.md").exists())
    return seeds or [folder]


def per_prompt(runs: list[Path],
               rows: Callable[[Path], list[Row]]) -> list[tuple[str, str, list[np.ndarray]]]:
    """Each statistic's kind and per-prompt values, one array per run."""
    per_run = [rows(r) for r in runs]
    return [(label, kind, [pr[i][2] for pr in per_run])
            for i, (label, kind, _) in enumerate(per_run[0])]


def summarise(values: list[np.ndarray]) -> tuple[Estimate, str]:
    """One run: mean over its prompts (t over prompts). Several: each seed's mean over its
    prompts, then t over seeds; the n column says which."""
    if len(values) == 1:
        e = t_interval(values[0], what="prompts")
        return e, f"{e.n} prompts"
    e = seed_level(values)
    counts = ", ".join(str(int(np.isfinite(v).sum())) for v in values)
    return e, f"{e.n} seeds ({counts} prompts)"


RANGE = {"tau": (-1.0, 1.0), "size": (0.0, float("inf")), "slope": (-float("inf"), float("inf"))}


def cell(e: Estimate, kind: str) -> str:
    """value (interval), the interval clipped to the range the statistic can take: a t over a few
    seeds reaches past tau = 1 or below a size of 0, the statistic itself cannot."""
    return level(within(e, *RANGE[kind]))


def render(folders: list[Path]) -> str:
    lines = ["| where | statistic | mean (95% t CI; over seeds when there are several) | n |",
             "|---|---|---|---|"]
    runs = [r for f in folders for r in runs_in(f)]
    for label, kind, values in per_prompt(runs, iteration_one):
        e, n = summarise(values)
        lines.append(f"| iteration 1 (M1's samples) | {label} | {cell(e, kind)} | {n} |")
    methods = sorted({p.parent.name for r in runs for p in r.glob("*/iter2")
                      if stored(p / "logps-M0.jsonl")})
    for method in methods:
        have = [r for r in runs if stored(r / method / "iter2" / f"logps-{method}-M2.jsonl")]
        for label, kind, values in per_prompt(have, partial(iteration_two, method=method)):
            e, n = summarise(values)
            lines.append(f"| iteration 2, {method} | {label} | {cell(e, kind)} | {n} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = render(args.runs)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
