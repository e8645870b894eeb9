"""studies/stage_times.py on a small fake seeds folder: per stage type, per method and per seed
sums, the wall span from the manifests, and the projection of what is left."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stage_times() -> types.ModuleType:
    path = ROOT / "studies" / "stage_times.py"
    spec = importlib.util.spec_from_file_location("stage_times", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


st = _stage_times()

STAGES = [  # (name, method, step, seconds)
    ("M1", "sft", "sft", 100.0),
    ("shared/iter1/samples", "shared", "sample", 10.0),
    ("cream/M2", "cream", "train", 50.0),
    ("evals/cream-M2", "cream", "evaluate", 30.0),
    ("cream-no-rc/M2", "cream-no-rc", "train", 40.0),
]


def _manifest(run: Path, name: str, method: str, step: str, seconds: float, end: str) -> None:
    path = run / f"{name}.manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stage": name, "kind": "rows", "method": method, "iteration": 1,
                                "step": step, "seconds": seconds, "created": end}))


@pytest.fixture
def seeds_folder(tmp_path: Path) -> Path:
    """seed-1: every stage, as manifests with timestamps; seed-2: a committed raw folder
    (timings.jsonl only) with every stage twice as slow; seed-3: a running seed (SFT only)."""
    one = tmp_path / "seed-1"
    for i, (name, method, step, seconds) in enumerate(STAGES):
        _manifest(one, name, method, step, seconds, f"2026-12-06T10:0{i}:00+00:00")
    _manifest(one, ".scratch/cream/M3", "cream", "train", 999.0, "2026-12-06T10:09:00+00:00")
    two = tmp_path / "seed-2"
    two.mkdir()
    (two / "timings.jsonl").write_text("".join(
        json.dumps({"method": st.METHOD_LABELS.get(m, m), "iteration": 1, "stage": step,
                    "name": name, "seconds": 2 * s}) + "\n" for name, m, step, s in STAGES))
    _manifest(tmp_path / "seed-3", "M1", "sft", "sft", 90.0, "2026-12-06T11:00:00+00:00")
    return tmp_path


def test_rows_from_manifests_and_timings(seeds_folder: Path) -> None:
    rows = st.stage_rows(seeds_folder)
    assert {r["seed"] for r in rows} == {1, 2, 3}
    assert len(rows) == 2 * len(STAGES) + 1  # the scratch manifest is not a finished stage
    assert {r["method"] for r in rows if r["name"] == "shared/iter1/samples"} == {"(shared)"}
    # seed 1: first stage started at 10:00 - 100 s, the last ended at 10:04
    assert st.wall_span([r for r in rows if r["seed"] == 1]) == pytest.approx(4 * 60 + 100)
    assert st.wall_span([r for r in rows if r["seed"] == 2]) is None  # no stamps


def test_projection_prices_missing_stages_at_their_mean(seeds_folder: Path) -> None:
    rows = st.stage_rows(seeds_folder)
    # Each stage costs s in seed 1 and 2s in seed 2: priced at 1.5 s (SFT: the mean of 3
    # seeds); seed 3 did SFT only.
    left = st.projection(rows, [1, 2, 3, 4])
    rest = 1.5 * sum(s for name, _, _, s in STAGES if name != "M1")
    assert left == {1: 0.0, 2: 0.0, 3: pytest.approx(rest),
                    4: pytest.approx(rest + (100 + 200 + 90) / 3)}
    # A new method priced as cream (seconds per seed: (80 + 160) / 2), evaluations rerun at
    # twice their price (new tasks).
    left = st.projection(rows, [1], like={"cream-c-half": "cream"}, rerun=["evaluate"],
                         scale={"evaluate": 2.0})
    assert left[1] == pytest.approx((50 + 60 + 100 + 120) / 2 + 2 * 1.5 * 30)
    with pytest.raises(SystemExit, match="method 'spin'"):
        st.projection(rows, [1], like={"x": "spin"})


def test_render_tables(seeds_folder: Path) -> None:
    text = st.render(seeds_folder, seeds=[1, 2, 3, 4, 5])
    assert "| train | 4 | 270 | 67.5 | " in text  # 50 + 40 + 100 + 80
    assert "| sft | 3 | 3 | 390 | 130 |" in text  # 100 + 200 + 90 over 3 seeds
    assert "| 1 | 5 | 3.8 | 5.7 |" in text  # 230 s of stage time, 340 s wall span
    assert "| 5 | " in text and "Total left:" in text


def test_empty_folder_and_bad_line_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no stage manifests or timings\.jsonl"):
        st.stage_rows(tmp_path)
    (tmp_path / "timings.jsonl").write_text('{"stage": "train", "name": "x", "seconds": 1}\nnope\n')
    with pytest.raises(SystemExit, match=r"timings.jsonl: line 2: expected a JSON object"):
        st.stage_rows(tmp_path)


def test_mde_table_shrinks_with_seeds_and_items() -> None:
    import math

    from cream_plugin.instruments.power import mde_mean

    text = st.mde_table([3, 5], [25, 100], [0.2])
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| 0.2 |")]
    values = {int(r[1]): (float(r[2]), float(r[3])) for r in rows}
    assert values[25][1] == pytest.approx(mde_mean(math.sqrt(0.2 / 25), 5), abs=1e-3)
    assert values[25][0] > values[25][1] > values[100][1]  # more seeds, more items: smaller
