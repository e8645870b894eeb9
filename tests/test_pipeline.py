"""The iterative pipeline on the smoke preset: every method, kill-and-resume, seeds, invalidation.

Each test runs real stages (tiny model, TRL training, lm-eval), so they take tens of seconds to
minutes on two shared cores and are marked slow. The reference run (``--method cream``, seed 7)
is made once per module in a subprocess and shared by the kill, seed and invalidation tests.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cream_plugin.loop.artifacts import MANIFEST_SUFFIX
from cream_plugin.testing import offline_env

pytestmark = pytest.mark.slow

VOLATILE = {"seconds"}
"""Fields of evaluation rows that hold wall-clock time, not results."""


@pytest.fixture(scope="module")
def run_env(data_dir, tmp_path_factory) -> dict[str, str]:
    cache = os.environ.get("CREAM_CACHE_DIR") or str(tmp_path_factory.mktemp("cache"))
    env = offline_env(data_dir, cache)
    # Build the tiny model into the cache once, in its own process, before any compared run:
    # every run under test then reads the same cached checkpoint the same way.
    warm = "from cream_plugin.forward.models import resolve_model_path as r; r('tiny-random')"
    subprocess.run([sys.executable, "-c", warm], env=env, check=True, timeout=300)
    return env


def cream_run(
    out: Path, env: dict[str, str], *args: str, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``cream run --preset smoke --method cream`` in a subprocess (killed when ``fault`` hits)."""
    cmd = [sys.executable, "-m", "cream_plugin.cli", "run", "--preset", "smoke"]
    cmd += ["--method", "cream", "--output", str(out), *args]
    run_env = dict(env)
    run_env.pop("CREAM_FAULT_STAGE", None)
    if fault:
        run_env["CREAM_FAULT_STAGE"] = fault
    return subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=600)


def ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def manifests(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Stage name -> manifest, for every manifest in the run folder."""
    out = {}
    for path in sorted(run_dir.rglob(f"*{MANIFEST_SUFFIX}")):
        name = str(path.relative_to(run_dir))[: -len(MANIFEST_SUFFIX)]
        out[name] = json.loads(path.read_text())
    return out


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(run_env, tmp_path_factory) -> Path:
    """One uninterrupted cream run with the smoke preset (seed 7)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    ok(cream_run(out, run_env, "--fresh"))
    return out


def assert_same_artifacts(a: Path, b: Path) -> None:
    """Every rows artifact equal (byte for byte; eval rows row for row without timings) and
    every checkpoint that is still on disk bit-identical (torch.equal on every tensor)."""
    import torch
    from safetensors.torch import load_file

    ma, mb = manifests(a), manifests(b)
    assert ma.keys() == mb.keys()
    for name, m in ma.items():
        assert m["complete"] and mb[name]["complete"], name
        assert m.get("pruned") == mb[name].get("pruned"), name
        if m["kind"] == "rows":
            if name.startswith("evals/"):
                strip = [
                    {k: v for k, v in r.items() if k not in VOLATILE}
                    for r in rows_of(a / f"{name}.jsonl")
                ]
                other = [
                    {k: v for k, v in r.items() if k not in VOLATILE}
                    for r in rows_of(b / f"{name}.jsonl")
                ]
                assert strip == other, name
            else:
                assert (a / f"{name}.jsonl").read_bytes() == (b / f"{name}.jsonl").read_bytes(), (
                    name
                )
                assert m["digest"] == mb[name]["digest"], name
        elif not m.get("pruned"):
            wa = load_file(str(a / name / "model.safetensors"))
            wb = load_file(str(b / name / "model.safetensors"))
            assert wa.keys() == wb.keys(), name
            for key in wa:
                assert torch.equal(wa[key], wb[key]), f"{name}: {key} differs"
            assert m["digest"] == mb[name]["digest"], name


def test_smoke_every_method(data_dir, run_env, tmp_path, monkeypatch) -> None:
    """Every method end to end: report, every stage's manifest, consistency in the pairs."""
    from cream_plugin.commands.run import add_arguments, build_config
    from cream_plugin.loop.pipeline import Pipeline
    from cream_plugin.plugins.registry import components

    METHODS = {name: c.obj for name, c in components("method").items()}

    for key in ("CREAM_DATA_DIR", "CREAM_CACHE_DIR"):
        monkeypatch.setenv(key, run_env[key])
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = build_config(parser.parse_args(["--preset", "smoke", "--output", str(tmp_path)]))
    # Every built-in method but the length-finding controls (test_method_knobs.py runs those).
    from cream_plugin.plugins.builtins.methods import LENGTH_CONTROLS

    assert sorted(config.methods) == sorted(set(METHODS) - set(LENGTH_CONTROLS))
    run_dir = Pipeline(config).run()

    assert (run_dir / "report.md").is_file()
    report = (run_dir / "report.md").read_text()
    assert "cream" in report
    # Every instrument section (issue 13); the bottom line, glossary and summary first (27).
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[:3] == ["## Bottom line", "## Glossary", "## Summary"]
    for title in ("Pool accuracy", "Reward quality against gold answers", "Is C informative?",
                  "Known biases", "Identical responses", "How far the policy moved",
                  "Paired comparisons on benchmark items", "Benchmarks", "Ranking consistency"):
        assert f"## {title}" in sections, title
    assert (run_dir / "plots" / "train_curves.png").is_file()
    assert json.loads((run_dir / "instruments.json").read_text())["pool_accuracy"]
    found = manifests(run_dir)
    cfg = config
    expected = {"prompts", "M1", "evals/sft-M1"}
    for method in cfg.methods:
        spec = METHODS[method]
        if spec.reward is None:
            continue
        for t in range(1, cfg.iterations + 1):
            scope = "shared/iter1" if t == 1 else f"{method}/iter{t}"
            expected |= {
                f"{method}/iter{t}/pairs",
                f"{method}/M{t + 1}",
                f"evals/{method}-M{t + 1}",
                f"{scope}/samples",
                f"{scope}/correctness",
                f"{method}/iter{t}/evidence",
                f"{method}/iter{t}/movement",
            }
            if spec.reward == "main":  # implicit reward: log-probs of M_t, M_{t-1} (, M_{t-2})
                current = "M1" if t == 1 else f"{method}-M{t}"
                expected |= {
                    f"{scope}/logps-{current}",
                    f"{scope}/logps-M{t - 1}",
                    f"{method}/iter{t}/consistency",
                }
            if spec.internal_consistency:  # the internal reward models' agreement, per iteration
                expected.add(f"{method}/iter{t}/internal-consistency")
    expected |= {"shared/iter1/rewards-judge-M1", f"shared/iter1/rewards-{cfg.rewarder.oracle}"}
    # Methods that build their own iterations (spin, meta-rewarding): pairs and a model each.
    for method in ("spin", "meta-rewarding"):
        for t in range(1, cfg.iterations + 1):
            expected |= {f"{method}/iter{t}/pairs", f"{method}/M{t + 1}",
                         f"evals/{method}-M{t + 1}"}
            assert rows_of(run_dir / f"{method}/iter{t}/pairs.jsonl"), (method, t)
    missing = expected - found.keys()
    assert not missing, f"stages without a manifest: {sorted(missing)}"
    for name, m in found.items():
        assert m["complete"] is True, name
        if m["kind"] == "rows":
            assert (run_dir / f"{name}.jsonl").is_file(), name
        else:
            assert m.get("pruned") or (run_dir / name / "model.safetensors").is_file(), name

    for t in range(1, cfg.iterations + 1):
        pairs = rows_of(run_dir / f"cream/iter{t}/pairs.jsonl")
        c_rows = {
            r["prompt_id"]: r["C"] for r in rows_of(run_dir / f"cream/iter{t}/consistency.jsonl")
        }
        assert pairs, f"cream iteration {t} made no pairs"
        assert set(c_rows) == {
            r["prompt_id"]
            for r in rows_of(
                run_dir / ("shared/iter1" if t == 1 else f"cream/iter{t}") / "samples.jsonl"
            )
        }
        for pair in pairs:
            c = pair["consistency"]
            assert 0.0 <= c <= 1.0, pair["prompt_id"]
            assert c == c_rows[pair["prompt_id"]] or (math.isnan(c_rows[pair["prompt_id"]])), pair
        # The pairs stage lists the consistency stage it read among its inputs.
        c_digest = found[f"cream/iter{t}/consistency"]["digest"]
        assert found[f"cream/iter{t}/pairs"]["inputs"]["consistency"] == c_digest
        # Without regularisation every pair has C = 1 (plain DPO).
        assert all(
            p["consistency"] == 1.0 for p in rows_of(run_dir / f"cream-no-rc/iter{t}/pairs.jsonl")
        )
    # M1's mean length in iteration 1's movement row: its samples counted in tokens, the same
    # counts as the log-prob stage's (the KL there uses M2's samples, so M1's are not rescored).
    moved = rows_of(run_dir / "cream/iter1/movement.jsonl")[0]["evidence"]["movement"][0]
    counts = [n for r in rows_of(run_dir / "shared/iter1/logps-M1.jsonl") for n in r["num_tokens"]]
    assert moved["movement"]["length_old"]["value"] == pytest.approx(sum(counts) / len(counts))
    # The exact KL: a pass holding M1 and M2 over M2's samples, never negative.
    kl_rows = rows_of(run_dir / "cream/iter1/exact-kl.jsonl")
    assert all(v >= 0 for r in kl_rows for v in r["kl_forward"] + r["kl_reverse"])
    assert moved["movement"]["kl_on"] == "M2's samples (iteration 2)"
    assert moved["movement"]["kl_forward"]["value"] >= 0
    assert "MC log-ratio" in moved["movement"]["mc_forward"]["method"]


# The stages of a cream run, in the order the pipeline reaches them; one SIGKILL inside each.
FAULTS = [
    "prompts",
    "M1",
    "evals/sft-M1",
    "shared/iter1/samples",
    "shared/iter1/logps-M1",
    "shared/iter1/logps-M0",
    "shared/iter1/rewards-implicit-M1",
    "cream/iter1/consistency",
    "cream/iter1/pairs",
    "cream/M2",
    "evals/cream-M2",
    "cream/iter2/samples",
    "cream/iter2/logps-*",
    "cream/iter2/pairs",
    "cream/M3",
    "evals/*",
    "cream/iter1/exact-kl",
    "shared/iter2/M1/samples",
    "cream/iter1/same-prompt-pool",
]


def test_kill_in_every_stage_then_resume(reference, run_env, tmp_path) -> None:
    """SIGKILL half-way through each stage in turn; each restart resumes from what was complete
    (earlier stages untouched) and the end result equals an uninterrupted run bit for bit."""
    out = tmp_path / "run"
    before: dict[str, dict[str, Any]] = {}
    for fault in FAULTS:
        done = cream_run(out, run_env, fault=fault)
        assert done.returncode == -9, (
            f"{fault}: not killed (rc {done.returncode})\n" + done.stderr[-3000:]
        )
        assert "fault injection: killing the run inside stage" in done.stderr
        after = manifests(out)
        for name, m in before.items():  # complete stages were skipped, not redone
            assert after.get(name) == m, f"restart at {fault} redid {name}"
        killed_in = done.stderr.rsplit("inside stage ", 1)[1].split()[0]
        assert killed_in not in after, f"{killed_in} has a manifest though it was killed"
        before = after
    ok(cream_run(out, run_env))
    after = manifests(out)
    for name, m in before.items():  # only pruning of intermediate checkpoints touched them
        assert {**after[name], "pruned": None} == {**m, "pruned": None}, name
    assert not [p for p in out.rglob(".*") if p.name != ".gitignore"], "leftover temporary files"
    assert_same_artifacts(reference, out)


def test_same_seed_same_pairs_other_seed_other_samples(reference, run_env, tmp_path) -> None:
    """A second run with seed 7 makes the same pairs; seed 8 draws different samples."""
    again, other = tmp_path / "again", tmp_path / "other"
    ok(cream_run(again, run_env))
    for t in (1, 2):
        name = f"cream/iter{t}/pairs.jsonl"
        assert (again / name).read_bytes() == (reference / name).read_bytes(), name
    ok(cream_run(other, run_env, "--set", "seed=8", "--set", "evaluation.limit=1"))
    ours = rows_of(reference / "shared/iter1/samples.jsonl")
    theirs = rows_of(other / "shared/iter1/samples.jsonl")
    assert [r["responses"] for r in ours] != [r["responses"] for r in theirs]


def test_changed_setting_reruns_that_stage_and_later_only(reference, run_env, tmp_path) -> None:
    """training.beta feeds the preference training: M2 and everything after it re-run, the
    prompts, SFT, iteration-1 samples, log-probs, consistency and pairs are kept."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    old = manifests(out)
    ok(cream_run(out, run_env, "--set", "training.beta=0.3"))
    new = manifests(out)
    kept = {
        "prompts",
        "M1",
        "evals/sft-M1",
        "shared/iter1/samples",
        "shared/iter1/logps-M1",
        "shared/iter1/logps-M0",
        "shared/iter1/rewards-implicit-M1",
        "shared/iter1/rewards-implicit-M0",
        "cream/iter1/consistency",
        "cream/iter1/pairs",
        "shared/iter1/correctness",
        "cream/iter1/evidence",
        "shared/iter2/M1/samples",  # M1 on iteration 2's prompts (same-prompt pool accuracy)
        "shared/iter2/M1/correctness",
    }
    assert kept | {"cream/M2"} <= old.keys()
    for name in kept:
        assert new[name] == old[name], f"{name} re-ran though its inputs did not change"
    rerun = set(old) - kept
    assert {
        "cream/M2",
        "cream/M3",
        "cream/iter2/samples",
        "cream/iter2/pairs",
        "evals/cream-M3",
    } <= rerun
    for name in rerun:
        assert new[name] != old[name], f"{name} was not re-run after training.beta changed"
        assert new[name]["created"] >= old[name]["created"], name


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under a folder with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


def dry_run(out: Path, env: dict[str, str], *args: str) -> dict[str, tuple[str, str]]:
    """``cream run --dry-run`` (the reference run's flags): stage -> (action, reason)."""
    done = cream_run(out, env, "--dry-run", *args)
    ok(done)
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"stage graph of {out}:"), done.stdout
    plan = {}
    for line in lines[1:]:
        action, name, rest = line.split(None, 2)
        plan[name] = (action, rest[1:rest.index("]")])
    return plan


def test_dry_run_of_a_fresh_folder_plans_every_stage_and_creates_nothing(
        run_env, tmp_path) -> None:
    out = tmp_path / "new"
    plan = dry_run(out, run_env)
    assert not out.exists(), "a dry run created the run folder"
    assert plan and all(v == ("compute", "artifact missing") for v in plan.values()), plan
    names = list(plan)
    for stage in FAULTS[:-1]:  # the run order: every faulted stage is in the graph, in order
        assert any(fnmatch.fnmatch(n, stage) for n in names), stage
    assert names.index("prompts") < names.index("shared/iter1/samples") < names.index(
        "shared/iter1/rewards-implicit-M1") < names.index("cream/iter1/pairs") < names.index(
        "cream/M2")


def test_dry_run_of_a_complete_folder_reuses_everything_and_writes_nothing(
        reference, run_env) -> None:
    before = folder_state(reference)
    plan = dry_run(reference, run_env)
    assert folder_state(reference) == before, "a dry run wrote to the run folder"
    assert set(plan) <= {n for n in manifests(reference)}
    assert {a for a, _ in plan.values()} == {"reuse"}, plan


def test_dry_run_names_the_stages_a_changed_setting_recomputes(reference, run_env) -> None:
    """training.beta: M2 (setting changed) and everything downstream of it (upstream
    recomputed); iteration 1's samples, log-probs, rewards and pairs are reused."""
    before = folder_state(reference)
    plan = dry_run(reference, run_env, "--set", "training.beta=0.3")
    assert folder_state(reference) == before
    assert plan["cream/M2"] == ("compute", "setting changed: training, consistency, seed")
    for name in ("cream/iter2/samples", "cream/iter2/pairs", "cream/M3", "evals/cream-M2",
                 "cream/iter1/movement"):
        action, reason = plan[name]
        assert action == "compute" and reason.startswith("upstream recomputed"), (name, reason)
    for name in ("prompts", "M1", "evals/sft-M1", "shared/iter1/samples",
                 "shared/iter1/rewards-implicit-M1", "cream/iter1/pairs"):
        assert plan[name][0] == "reuse", name
    assert plan["cream/iter1/pairs"] == ("reuse", "complete")


def test_implicit_beta_applies_to_the_rewards_of_a_run(reference, run_env, tmp_path,
                                                      monkeypatch) -> None:
    """The run's implicit reward goes through the registered rewarder with its options: on a
    copy of the smoke run, beta=0.5 recomputes the implicit rewards stages alone (from the
    stored log-probs: no model loaded) and halves every reward of the table."""
    import argparse

    import numpy as np

    from cream_plugin.commands.run import add_arguments, build_config
    from cream_plugin.loop.pipeline import Pipeline

    for key in ("CREAM_DATA_DIR", "CREAM_CACHE_DIR"):
        monkeypatch.setenv(key, run_env[key])
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = build_config(parser.parse_args([
        "--preset", "smoke", "--method", "cream", "--output", str(out),
        "--set", "rewarder.options={implicit: {beta: 0.5}}"]))
    pipe = Pipeline(config)
    graph = pipe.graph().whole_run()
    names = ("shared/iter1/rewards-implicit-M1", "shared/iter1/rewards-implicit-M0")
    upto = list(graph.nodes).index(names[1]) + 1
    with pipe.session():
        pipe.run_graph(list(graph)[:upto])
    assert pipe.runner.ran == list(names), pipe.runner.ran
    for name in names:
        before = np.array([r["rewards"] for r in rows_of(reference / f"{name}.jsonl")])
        after = np.array([r["rewards"] for r in rows_of(out / f"{name}.jsonl")])
        np.testing.assert_allclose(after, 0.5 * before, equal_nan=True)
        assert np.isfinite(before).any()


def test_subset_of_methods_then_new_settings_resumes(run_env, tmp_path) -> None:
    """Running one method on a finished two-method folder keeps the other method's final
    checkpoint; a later evaluation-limit change re-evaluates every model (training pruned
    intermediate checkpoints again where needed) and keeps the two limits' rows apart."""
    out = tmp_path / "run"
    ok(cream_run(out, run_env, "--method", "cream,srlm"))
    assert (out / "srlm/M3/model.safetensors").is_file()
    assert not (out / "srlm/M2/model.safetensors").exists()  # pruned intermediate
    ok(cream_run(out, run_env, "--method", "cream"))
    assert (out / "srlm/M3/model.safetensors").is_file(), "another method's final was pruned"
    ok(cream_run(out, run_env, "--method", "cream,srlm", "--set", "evaluation.limit=1"))
    rows = rows_of(out / "results.jsonl")
    limits = {(r["method"], r["iteration"], r["limit"]) for r in rows}
    assert {("srlm", 2, 2), ("srlm", 2, 1), ("cream", 3, 2), ("cream", 3, 1)} <= limits
    report = (out / "report.md").read_text()
    assert "made with other evaluation settings" in report
    evals = rows_of(out / "evals/srlm-M2.jsonl")
    assert {r["limit"] for r in evals if r.get("kind") != "item"} == {1}
