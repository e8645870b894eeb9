"""The GPU check (run by scripts/gpu_check.sh with the staged wheels on the path).

Three runs, each a real ``cream run`` in a subprocess, with their per-stage times:

1. the smoke preset (tiny model, every method) on CUDA in float32;
2. a short SmolLM2-135M-Instruct run in bf16 on CUDA (cream, one iteration);
3. the smoke training stages under ``--accelerate-config fsdp`` on one GPU with bf16 mixed
   precision (the FSDP2 engine check and the gathered checkpoint on CUDA).

Prints a table of stage times per run and writes it as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

STAGE_LINE = re.compile(r"cream\.runner: stage (\S+) done in ([0-9.]+) s")

RUNS: dict[str, list[str]] = {
    "smoke-cuda-fp32": ["--preset", "smoke", "--set", "model.device=cuda"],
    "smollm2-cuda-bf16": [
        "--preset", "smoke", "--method", "cream", "--set", "iterations=1",
        "--set", "model.name=smollm2-135m-instruct", "--set", "model.dtype=bfloat16",
        "--set", "model.device=cuda", "--set", "data.prompts_per_iteration=32",
        "--set", "sampling.max_new_tokens=64", "--set", "training.learning_rate=1e-5",
        "--set", "training.batch_size=4", "--set", "evaluation.limit=8",
    ],
    "fsdp-1gpu-bf16": [
        "--preset", "smoke", "--method", "cream,scir", "--set", "iterations=1",
        "--set", "model.device=cuda", "--accelerate-config", "fsdp", "--num-processes", "1",
        "--launch-arg=--mixed_precision=bf16",
    ],
}


def environment() -> dict[str, str]:
    import torch

    info = {"torch": torch.__version__, "cuda": str(torch.version.cuda),
            "cuda_available": str(torch.cuda.is_available())}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["bf16_supported"] = str(torch.cuda.is_bf16_supported())
    for name in ("transformers", "accelerate", "trl", "lm_eval", "datasets"):
        try:
            info[name] = __import__(name).__version__
        except Exception as exc:  # report, keep going: the runs show what breaks
            info[name] = f"missing ({type(exc).__name__})"
    return info


def run_one(name: str, args: list[str], out: Path) -> dict[str, object]:
    cmd = [sys.executable, "-m", "cream_plugin.cli", "run", *args,
           "--output", str(out / name), "--fresh"]
    print(f"\n== {name}: {' '.join(cmd[2:])}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    (out / f"{name}.log").write_text(done.stdout + done.stderr)
    stages: dict[str, float] = {}
    for match in STAGE_LINE.finditer(done.stderr):
        stages[match.group(1)] = stages.get(match.group(1), 0.0) + float(match.group(2))
    ok = done.returncode == 0
    print(f"{name}: {'ok' if ok else f'FAILED rc={done.returncode}'} in {wall:.1f} s")
    for stage, seconds in stages.items():
        print(f"  {stage:40s} {seconds:8.1f} s")
    if not ok:
        print(done.stderr[-4000:])
    return {"ok": ok, "returncode": done.returncode, "wall_s": round(wall, 1), "stages": stages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("gpu-check-out"))
    parser.add_argument("--only", action="append", choices=list(RUNS), help="run only these")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(json.dumps(env, indent=1))
    if env.get("cuda_available") != "True":
        print("no CUDA device: this check is for a GPU machine")
        return 2
    results = {name: run_one(name, cmd, args.out) for name, cmd in RUNS.items()
               if not args.only or name in args.only}
    (args.out / "gpu_check.json").write_text(json.dumps({"environment": env, "runs": results},
                                                        indent=1))
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
