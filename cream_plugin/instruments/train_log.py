"""Training curves from TRL's ``trainer.state.log_history`` (saved as a JSON list of dicts).

The pipeline saves each iteration's log beside its checkpoint (``<key>.train_log.json``); a TRL
user can pass ``trainer.state.log_history`` directly. Every numeric key of a logging step becomes
a curve over ``step``; the final summary entry (``train_runtime``, ``train_loss``, ...) is left
out because it is not a step.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.instruments.estimate import Estimate
from cream_plugin.instruments.intervals import t_interval

DEFAULT_CURVES: tuple[str, ...] = (
    "loss", "rewards/margins", "rewards/accuracies", "consistency/mean", "grad_norm",
    "learning_rate",
)
_NOT_CURVES = {"step", "epoch", "total_flos"}


@dataclass(frozen=True)
class Curve:
    """One logged quantity over optimizer steps."""

    steps: tuple[float, ...]
    values: tuple[float, ...]


def load_train_log(source: str | os.PathLike[str] | Sequence[Mapping[str, Any]]
                   ) -> list[dict[str, Any]]:
    """A log history from a JSON file or an in-memory list; a bad file names itself."""
    where = "log history"
    if isinstance(source, str | os.PathLike):
        where = str(source)
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"{where}: cannot read train log ({exc.strerror})") from None
        except ValueError:
            raise DataError(f"{where}: not valid JSON") from None
    else:
        data = source
    if not isinstance(data, list):
        raise DataError(f"{where}: expected a JSON list of log entries (trainer.state.log_history)")
    for i, entry in enumerate(data):
        if not isinstance(entry, Mapping):
            raise DataError(f"{where}: entry {i} is {type(entry).__name__}, expected an object")
    return [dict(e) for e in data]


def train_curves(source: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
                 keys: Sequence[str] | None = None) -> dict[str, Curve]:
    """Curves keyed by metric name (only ``keys`` when given), in log order."""
    points: dict[str, list[tuple[float, float]]] = {}
    for i, entry in enumerate(load_train_log(source)):
        if "train_runtime" in entry:
            continue
        step = entry.get("step", i + 1)
        for key, value in entry.items():
            if key in _NOT_CURVES or (keys is not None and key not in keys):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(float(value)):
                points.setdefault(key, []).append((float(step), float(value)))
    order = list(keys) if keys is not None else list(points)
    return {k: Curve(tuple(s for s, _ in points[k]), tuple(v for _, v in points[k]))
            for k in order if k in points}


def curve_mean(curves: Mapping[str, Curve], key: str) -> Estimate:
    """Mean of one logged quantity over the iteration's steps (t interval over steps)."""
    curve = curves.get(key)
    return t_interval(curve.values if curve else [], what=f"logged steps of {key}")


def plot_train_curves(runs: Mapping[str, Mapping[str, Curve]], path: str | os.PathLike[str],
                      keys: Sequence[str] = DEFAULT_CURVES) -> Path:
    """One panel per key, one line per run (e.g. ``"cream it1"``), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in keys if any(k in curves for curves in runs.values())]
    if not panels:
        raise DataError(f"no run logged any of {', '.join(keys)}: nothing to plot")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, panels, strict=False):
        for label, curves in runs.items():
            if key in curves:
                ax.plot(curves[key].steps, curves[key].values, marker=".", label=label)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
