"""The cost of a study: stage seconds per stage type, per method and per seed of a run folder
(one run, or a seeds folder of ``seed-<s>`` runs), and the projected time of what is left.

A running study has no ``timings.jsonl`` yet (it is written when a run ends), so the stage
manifests (``*.manifest.json``: step, method, seconds, created) are read first and
``timings.jsonl`` is the fallback (a committed raw folder keeps only that file). The projection
prices every stage that some seed has finished and another planned seed has not at its mean
over the seeds that finished it; ``--like NEW=OLD`` prices a method no seed has run yet at
OLD's mean seconds per seed (the controls train like cream-no-rc); ``--rerun evaluate`` counts
finished stages of that type as to be done again (new evaluation tasks change their identity);
``--scale evaluate=1.8`` multiplies a stage type's price (more tasks per evaluation);
``--fresh`` prices every planned seed as not started, ``--drop`` leaves methods out.

``--mde-items 25 50 100`` adds what cutting seeds or items costs in detectable effect.

Run:  python studies/stage_times.py RUN_DIR [--seeds 1 2 3 4 5] [--like cream-c-half=cream]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

MANIFEST_SUFFIX = ".manifest.json"
METHOD_LABELS = {"": "(all)", "shared": "(shared)"}
"""How timings.jsonl names the stages no single method owns (the pipeline's labels)."""


def _seed_of(run: Path) -> int | None:
    tail = run.name.removeprefix("seed-")
    return int(tail) if run.name.startswith("seed-") and tail.isdigit() else None


def _manifest_rows(run: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(run.rglob(f"*{MANIFEST_SUFFIX}")):
        rel = path.relative_to(run).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue  # a scratch folder of a stage being written
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(m, dict) or "step" not in m or "seconds" not in m:
            continue
        rows.append({"method": METHOD_LABELS.get(m.get("method", ""), m.get("method")),
                     "iteration": m.get("iteration", 0), "stage": m["step"],
                     "name": rel[: -len(MANIFEST_SUFFIX)], "seconds": float(m["seconds"]),
                     "created": m.get("created")})
    return rows


def _timings_rows(run: Path) -> list[dict[str, Any]]:
    path = run / "timings.jsonl"
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append({**row, "seconds": float(row["seconds"])})
        except (ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"{path}: line {number}: expected a JSON object with stage, "
                             f"name and seconds ({err})") from None
    return rows


def stage_rows(folder: Path) -> list[dict[str, Any]]:
    """One row per finished stage: seed, method, iteration, stage (type), name, seconds."""
    runs = sorted((p for p in folder.glob("seed-*") if p.is_dir()),
                  key=lambda p: (_seed_of(p) is None, _seed_of(p) or 0, p.name)) or [folder]
    out = []
    for run in runs:
        rows = _manifest_rows(run) or _timings_rows(run)
        out += [{**row, "seed": _seed_of(run)} for row in rows]
    if not out:
        raise SystemExit(f"{folder}: no stage manifests or timings.jsonl in it or its seed-* "
                         f"folders")
    return out


def _table(title: str, head: str, rows: Iterable[tuple[str, ...]]) -> list[str]:
    cols = head.count("|") - 1
    return [title, "", head, "|" + "---|" * cols, *("| " + " | ".join(r) + " |" for r in rows),
            ""]


def _by(rows: list[dict[str, Any]], key: str) -> dict[Any, list[float]]:
    groups: dict[Any, list[float]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row["seconds"])
    return groups


def wall_span(rows: list[dict[str, Any]]) -> float | None:
    """Seconds from the first stage's start to the last stage's end (manifests' ``created``
    stamps): stage time plus loading models and the gaps between stages; None without stamps."""
    ends, starts = [], []
    for row in rows:
        if not row.get("created"):
            return None
        end = datetime.fromisoformat(row["created"]).timestamp()
        ends.append(end)
        starts.append(end - row["seconds"])
    return max(ends) - min(starts) if ends else None


def projection(rows: list[dict[str, Any]], seeds: Sequence[int | None],
               like: dict[str, str] | None = None, rerun: Iterable[str] = (),
               scale: dict[str, float] | None = None) -> dict[Any, float]:
    """Seconds still to run per planned seed (see the module docstring for the pricing)."""
    like, scale, rerun = like or {}, scale or {}, set(rerun)
    price: dict[str, list[float]] = defaultdict(list)
    stage_of: dict[str, str] = {}
    done: dict[Any, set[str]] = defaultdict(set)
    for row in rows:
        price[row["name"]].append(row["seconds"])
        stage_of[row["name"]] = row["stage"]
        if row["stage"] not in rerun:
            done[row["seed"]].add(row["name"])
    mean = {name: sum(v) / len(v) * scale.get(stage_of[name], 1.0) for name, v in price.items()}
    per_seed_new = 0.0
    for old in like.values():
        old_rows = [r for r in rows if r["method"] == old]
        if not old_rows:
            raise SystemExit(f"--like: no finished stage of method {old!r} to price it by")
        old_seeds = {r["seed"] for r in old_rows}
        per_seed_new += sum(r["seconds"] * scale.get(r["stage"], 1.0)
                            for r in old_rows) / len(old_seeds)
    return {seed: sum(s for name, s in mean.items() if name not in done[seed]) + per_seed_new
            for seed in seeds}


def render(folder: Path, seeds: Sequence[int] | None = None, like: dict[str, str] | None = None,
           rerun: Iterable[str] = (), scale: dict[str, float] | None = None,
           drop: Iterable[str] = ()) -> str:
    """The tables and the projection (``drop``: methods left out, e.g. a variant not re-run)."""
    rows = [r for r in stage_rows(folder) if r["method"] not in set(drop)]
    whole = sum(r["seconds"] for r in rows)
    present = sorted({r["seed"] for r in rows}, key=lambda s: (s is None, s or 0))
    lines = [f"Stage seconds in {folder}: {whole / 60:.1f} min of stage time, "
             f"{len(rows)} stages, seeds {', '.join(map(str, present))}.", ""]
    by_stage = _by(rows, "stage")
    lines += _table("Per stage type:", "| stage | runs | seconds | mean s per run | share |",
                    ((stage, str(len(v)), f"{sum(v):.0f}", f"{sum(v) / len(v):.1f}",
                      f"{100 * sum(v) / whole:.1f}%")
                     for stage, v in sorted(by_stage.items(), key=lambda kv: -sum(kv[1]))))
    method_seeds: dict[str, set[Any]] = defaultdict(set)
    for row in rows:
        method_seeds[row["method"]].add(row["seed"])
    lines += _table("Per method (the stages it owns; `(shared)`: M0/M1 stages every method "
                    "reuses):", "| method | seeds | stages | seconds | mean s per seed |",
                    ((str(m), str(len(method_seeds[m])), str(len(v)), f"{sum(v):.0f}",
                      f"{sum(v) / len(method_seeds[m]):.0f}")
                     for m, v in sorted(_by(rows, "method").items(), key=lambda kv: -sum(kv[1]))))
    per_seed = []
    for seed in present:
        mine = [r for r in rows if r["seed"] == seed]
        span = wall_span(mine)
        per_seed.append((str(seed), str(len(mine)), f"{sum(r['seconds'] for r in mine) / 60:.1f}",
                         "-" if span is None else f"{span / 60:.1f}"))
    lines += _table("Per seed (wall span: first stage start to last stage end, from the "
                    "manifests):", "| seed | stages | stage min | wall span min |", per_seed)
    planned = list(seeds) if seeds else present
    stages_all = {r["stage"] for r in rows}
    left = projection(rows, planned, like, rerun, scale)
    lines += _table(
        "Projected stage time still to run"
        + (f" (new methods priced as: {', '.join(f'{k} like {v}' for k, v in like.items())})"
           if like else "")
        + (" (fresh seeds: every stage to run)" if stages_all <= set(rerun)
           else f" (rerun: {', '.join(sorted(rerun))})" if rerun else "")
        + (f" (scaled: {', '.join(f'{k} x{v:g}' for k, v in scale.items())})" if scale else "")
        + ":", "| seed | min left |", ((str(s), f"{v / 60:.1f}") for s, v in left.items()))
    lines.append(f"Total left: {sum(left.values()) / 3600:.2f} h of stage time "
                 f"({sum(left.values()) / 60:.0f} min).")
    return "\n".join(lines) + "\n"


def mde_table(seeds: Sequence[int], items: Sequence[int], discordance: Sequence[float]) -> str:
    """What cutting seeds or items costs: the smallest accuracy difference between two models
    that the seed-level paired t-test detects (80% power, alpha 0.05), each seed scoring its
    own ``items`` benchmark items, when a share ``discordance`` of items is scored differently
    by the two models (the per-seed difference then has sd sqrt(discordance / items); real
    seed-to-seed variation in training only adds to it)."""
    import math

    from cream_plugin.instruments.power import mde_mean, mde_paired_binary

    head = "| discordance | items per seed | " + " | ".join(f"{n} seeds" for n in seeds) + \
        " | pooled McNemar, 5 seeds |"
    rows = []
    for disc in discordance:
        for n_items in items:
            sd = math.sqrt(disc / n_items)
            cells = [f"{mde_mean(sd, n):.3f}" for n in seeds]
            pooled = mde_paired_binary(max(seeds) * n_items, disc)
            rows.append((f"{disc:g}", str(n_items), *cells, f"{pooled:.3f}"))
    return "\n".join(_table("Minimum detectable accuracy difference (seed-level paired t-test; "
                            "the pooled McNemar over all seeds' items for reference):", head,
                            rows))


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, target = value.partition("=")
        if not sep or not key or not target:
            raise SystemExit(f"--{what}: expected NAME=VALUE, got {value!r}")
        out[key] = target
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", help="planned seeds (default: present)")
    parser.add_argument("--like", nargs="*", default=[], metavar="NEW=OLD")
    parser.add_argument("--rerun", nargs="*", default=[], metavar="STAGE")
    parser.add_argument("--scale", nargs="*", default=[], metavar="STAGE=FACTOR")
    parser.add_argument("--drop", nargs="*", default=[], metavar="METHOD",
                        help="leave these methods' stages out (a method the new plan drops)")
    parser.add_argument("--fresh", action="store_true",
                        help="price every planned seed as not started (a new study priced "
                        "from a finished one's stage times)")
    parser.add_argument("--mde-items", type=int, nargs="*", default=[],
                        help="also print the MDE table for these items per seed")
    parser.add_argument("--mde-discordance", type=float, nargs="+", default=[0.04, 0.2])
    args = parser.parse_args(argv)
    try:
        scale = {k: float(v) for k, v in _pairs(args.scale, "scale").items()}
    except ValueError as err:
        raise SystemExit(f"--scale: expected STAGE=NUMBER ({err})") from None
    rerun = list(args.rerun)
    if args.fresh:  # every stage type is to be run (again)
        rerun += sorted({r["stage"] for r in stage_rows(args.run)})
    print(render(args.run, args.seeds, _pairs(args.like, "like"), rerun, scale, args.drop),
          end="")
    if args.mde_items:
        print("\n" + mde_table([3, 4, 5], args.mde_items, args.mde_discordance), end="")


if __name__ == "__main__":
    main()
