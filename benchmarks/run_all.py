"""Run every stage benchmark once and write BENCHMARKS.md (figures, machine, commands).

Run:  python benchmarks/run_all.py [--quick] [--out BENCHMARKS.md]   (or `make bench`)
Each stage runs in its own process (so one stage's threads or memory do not slow another); its
output is copied verbatim under the stage's goal, with the command that reproduces it, and
benchmarks/analysis.md (what bounds each stage, what is left) is appended.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (title, goal, script and arguments, quick arguments)
STAGES: list[tuple[str, str, list[str], list[str]]] = [
    ("1. Sampling",
     "new tokens/s >= 3x `model.generate` at batch 8 and >= 0.5x the batched forward floor",
     ["bench_sampling.py"], ["--prompts", "8", "--repeats", "1", "--check-prompts", "2"]),
    ("2 and 4. Reward scoring, consistency and pairs",
     "log-prob tokens/s >= 0.9x a plain batched forward over the same tokens; forward tokens = "
     "the minimum; consistency + pairs for 20,000 prompts x 5 responses < 1 s",
     ["bench_rewards.py"], ["--prompts", "4", "--repeats", "1"]),
    ("3. Training",
     "CREAMTrainer step time within 5% of DPOTrainer's on the same batches",
     ["bench_trainer.py", "--model", "smollm2-135m-instruct", "--steps", "4"],
     ["--steps", "2", "--repeats", "1"]),
    ("3b. Training: fast path against today's",
     "SFT and preference training >= 1.5x today's tokens/s on the same data, same losses",
     ["bench_trainer.py", "--paths", "--model", "smollm2-135m-instruct", "--steps", "3"],
     ["--steps", "2", "--repeats", "1", "--kinds", "sft,cream"]),
    ("5. Evaluation",
     "tasks indexed once, model in memory, items/s per task; multiple-choice tasks (cream-hf: "
     "each context run once) and generative tasks (GSM8K 5-shot, decode loop) >= 2x lm-eval's "
     "HFLM at batch 16 with the same log-likelihoods (1e-4), generations and scores",
     ["bench_eval.py"],
     ["--mc-tasks", "cream_arc_easy", "--mc-limit", "8", "--gen-limit", "2",
      "--gen-batch-size", "2", "--repeats", "1"]),
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def write(path: str, lines: list[str]) -> None:
    """The figures so far, then benchmarks/analysis.md (what bounds each stage)."""
    analysis = (HERE / "analysis.md").read_text(encoding="utf-8")
    Path(path).write_text("\n".join([*lines, analysis]) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", default="", help="comma-separated stage numbers, e.g. 1,3")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    lines = ["# Benchmarks", "",
             f"Machine: {machine()}. Written by `python benchmarks/run_all.py` on "
             f"{time.strftime('%Y-%m-%d %H:%M')}; load average at the start "
             f"{os.getloadavg()[0]:.2f} (the box is shared, so every figure is a ratio to a "
             "baseline measured in the same process, interleaved).", ""]
    for title, goal, command, quick in STAGES:
        if args.only and not any(title.startswith(f"{n}") for n in args.only.split(",")):
            continue
        argv = [sys.executable, str(HERE / command[0]), *command[1:],
                *(quick if args.quick else [])]
        shown = " ".join(["python", f"benchmarks/{command[0]}", *argv[2:]])
        print(f"== {title}: {shown}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        out = "\n".join(line for line in done.stdout.splitlines()
                        if "Warning" not in line and not line.startswith("{'"))  # Trainer logs
        if done.returncode:
            out += f"\n(exit {done.returncode})\n" + done.stderr[-2000:]
        print(out, flush=True)
        lines += [f"## {title}", "", f"Goal: {goal}.", "", f"Command: `{shown}` "
                  f"({time.perf_counter() - start:.0f} s)", "", "```", out.strip(), "```", ""]
        write(args.out, lines)  # after every stage, so a cut-short run keeps what it measured
    write(args.out, lines)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
