"""Response length per method and seed, and the paired per-prompt difference of two methods.

The implicit reward prefers short responses, so a method that follows it may collapse to bare
answers ("B"); this table shows whether and where. Lengths are characters of the responses each
model sampled in the last iteration's sampling stage (``<method>/iter<T>/samples``; M1's are
``shared/iter1``, on other prompts, so they are not paired).

Run:  python studies/lengths.py RUN_DIR [--pair cream,cream-no-rc] [--iteration 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python studies/lengths.py`: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from cream_plugin.instruments.paired import paired_continuous
from cream_plugin.instruments.seeds import across_seeds
from studies.folder import prompt_lengths, stored


def seed_dirs(run: Path) -> list[Path]:
    seeds = sorted(run.glob("seed-*"))
    return seeds or [run]


def table(run: Path, iteration: int) -> str:
    seeds = seed_dirs(run)
    methods = sorted({p.parent.parent.name for s in seeds
                      for p in s.glob(f"*/iter{iteration}/samples.jsonl*")})
    lines = [f"| model | {' | '.join(s.name for s in seeds)} | mean |",
             "|---|" + "---|" * (len(seeds) + 1)]
    for label, rel in [("M1 (shared/iter1)", "shared/iter1"),
                       *[(f"{m} M{iteration}", f"{m}/iter{iteration}") for m in methods]]:
        values = [np.mean(list(prompt_lengths(s / rel / "samples.jsonl").values()))
                  for s in seeds if stored(s / rel / "samples.jsonl")]
        cells = " | ".join(f"{v:.0f}" for v in values)
        lines.append(f"| {label} | {cells} | {np.mean(values):.0f} |")
    return "\n".join(lines)


def paired(run: Path, a: str, b: str, iteration: int) -> str:
    """Seeds as replicates: the per-prompt difference within each seed, its mean per seed, then
    the mean over seeds with a t-interval (n = seeds); each seed's Wilcoxon test is within-seed."""
    per_seed = []
    for s in seed_dirs(run):
        la = prompt_lengths(s / a / f"iter{iteration}" / "samples.jsonl")
        lb = prompt_lengths(s / b / f"iter{iteration}" / "samples.jsonl")
        common = [k for k in la if k in lb]
        per_seed.append((s.name, paired_continuous([lb[k] for k in common],
                                                   [la[k] for k in common])))
    e = across_seeds([x.value for _, x in per_seed])
    each = "; ".join(f"{name} {x.value:+.1f} (within-seed Wilcoxon p = {x.p_value:.2g}, "
                     f"n = {x.n} prompts)" for name, x in per_seed)
    return (f"{a} - {b}: {e.value:+.1f} characters per response, mean of the per-seed means "
            f"({e.low:+.1f} to {e.high:+.1f}, 95% t-interval over seeds; p = {e.p_value:.2g}; "
            f"n = {e.n} seeds; MDE {e.mde:.1f} characters). Per seed: {each}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--pair", default="cream,cream-no-rc")
    parser.add_argument("--iteration", type=int, default=2)
    args = parser.parse_args()
    print(table(args.run, args.iteration))
    print()
    a, b = args.pair.split(",")
    print(paired(args.run, a, b, args.iteration))


if __name__ == "__main__":
    main()
