"""Wall time per stage kind of a finished run (or of every seed of a seeds folder), for
BENCHMARKS.md: where the time of a study or demo goes.

Run:  python studies/stage_times.py RUN_DIR
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def timings(folder: Path) -> list[dict]:
    runs = sorted(p for p in folder.glob("seed-*") if (p / "timings.jsonl").exists()) or [folder]
    return [json.loads(x) for r in runs for x in (r / "timings.jsonl").read_text().splitlines()
            if x.strip()]


def render(folder: Path) -> str:
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for row in timings(folder):
        total[row["stage"]] += float(row["seconds"])
        count[row["stage"]] += 1
    whole = sum(total.values())
    lines = [f"Stage seconds summed over {folder} ({whole / 60:.1f} min of stage time).", "",
             "| stage | runs | seconds | mean s per run | share |", "|---|---|---|---|---|"]
    for stage, secs in sorted(total.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {stage} | {count[stage]} | {secs:.0f} | {secs / count[stage]:.1f} | "
                     f"{100 * secs / whole:.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    print(render(parser.parse_args().run))


if __name__ == "__main__":
    main()
