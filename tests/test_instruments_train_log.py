"""Training curves from TRL's log_history and their plot."""

from __future__ import annotations

import json

import pytest

from cream_plugin.errors import DataError
from cream_plugin.instruments.train_log import (
    curve_mean,
    load_train_log,
    plot_train_curves,
    train_curves,
)

LOG = [
    {"loss": 0.69, "grad_norm": 1.5, "learning_rate": 1e-6, "rewards/margins": 0.0,
     "rewards/accuracies": 0.0, "consistency/mean": 0.6, "epoch": 0.5, "step": 1},
    {"loss": 0.65, "grad_norm": float("nan"), "learning_rate": 5e-7, "rewards/margins": 0.2,
     "rewards/accuracies": 1.0, "consistency/mean": 0.7, "epoch": 1.0, "step": 2,
     "note": "text is skipped"},
    {"train_runtime": 3.2, "train_loss": 0.67, "epoch": 1.0, "step": 2},
]


def test_curves_from_a_log_history_skip_the_summary_entry_and_non_numbers():
    curves = train_curves(LOG)
    assert curves["loss"].steps == (1.0, 2.0) and curves["loss"].values == (0.69, 0.65)
    assert curves["grad_norm"].values == (1.5,)  # NaN dropped
    assert "train_loss" not in curves and "note" not in curves and "epoch" not in curves
    only = train_curves(LOG, keys=["rewards/margins", "missing"])
    assert list(only) == ["rewards/margins"]
    m = curve_mean(curves, "rewards/accuracies")
    assert (m.value, m.n) == (0.5, 2)
    assert not curve_mean(curves, "missing").defined


def test_log_file_errors_name_the_file(tmp_path):
    good = tmp_path / "M2.train_log.json"
    good.write_text(json.dumps(LOG))
    assert [e.get("loss") for e in load_train_log(good)] == [0.69, 0.65, None]
    assert train_curves(str(good))["consistency/mean"].values == (0.6, 0.7)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON"):
        load_train_log(bad)
    bad.write_text(json.dumps({"loss": 1}))
    with pytest.raises(DataError, match="expected a JSON list"):
        load_train_log(bad)
    bad.write_text(json.dumps([{"loss": 1}, 3]))
    with pytest.raises(DataError, match="entry 1 is int"):
        load_train_log(bad)
    with pytest.raises(DataError, match="cannot read"):
        load_train_log(tmp_path / "absent.json")


def test_plot_writes_a_png_with_the_logged_panels(tmp_path):
    runs = {"cream it1": train_curves(LOG), "cream-no-rc it1": train_curves(LOG[:1])}
    out = plot_train_curves(runs, tmp_path / "plots" / "training.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DataError, match="nothing to plot"):
        plot_train_curves(runs, tmp_path / "x.png", keys=["kl"])
