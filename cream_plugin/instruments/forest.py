"""Forest plots: one comparison's per-seed estimates with their within-seed intervals, and the
across-seed mean with its t-interval over seeds, so a reader sees whether seeds agree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from cream_plugin.instruments.estimate import Estimate


def forest_plot(title: str, per_seed: Sequence[tuple[str, Estimate]], across: Estimate,
                path: Path, unit: str = "points", scale: float = 100.0) -> Path:
    """Write a PNG: one row per seed (label, estimate) and a last row for ``across``; values are
    multiplied by ``scale`` (100 for proportions in points). A dashed line marks 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [*per_seed, ("across seeds (t)", across)]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1.2))
    for i, (_, e) in enumerate(rows):
        y = len(rows) - 1 - i
        colour = "black" if i == len(rows) - 1 else "tab:blue"
        if e.has_interval:
            ax.plot([e.low * scale, e.high * scale], [y, y], color=colour, lw=2)
        if not math.isnan(e.value):
            ax.plot([e.value * scale], [y], marker="D" if i == len(rows) - 1 else "o",
                    color=colour)
    ax.axvline(0.0, color="grey", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)])
    ax.set_xlabel(f"difference ({unit}), 95% intervals")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
