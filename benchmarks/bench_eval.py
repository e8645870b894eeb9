"""Benchmark: evaluation items/s per task with the in-memory lm-eval evaluator (SmolLM2-135M).

Run:  python benchmarks/bench_eval.py [--mc-limit 32 --gen-limit 3 --batch-sizes 16,64]
The task index is built once (its time is reported) and reused; the model stays in memory.
Multiple-choice batch sizes are timed interleaved (A, B, A, B) and medians reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def timed(evaluator: Any, lm: Any, task: str, limit: int) -> tuple[float, list[dict[str, Any]]]:
    start = time.perf_counter()
    rows = evaluator.evaluate_lm(lm, tasks=[task], limit=limit, bootstrap_iters=0)
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mc-task", default="cream_arc_easy")
    parser.add_argument("--gen-task", default="cream_gsm8k")
    parser.add_argument("--mc-limit", type=int, default=32)
    parser.add_argument("--gen-limit", type=int, default=3)
    parser.add_argument("--batch-sizes", default="16,64")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch
    from lm_eval.models.huggingface import HFLM

    from cream_plugin.models import load_model, load_tokenizer
    from evaluators.lm_eval_evaluator import LMEvalEvaluator

    tok = load_tokenizer()
    model = load_model(device="cpu").eval()
    evaluator = LMEvalEvaluator(data_dir=os.environ.get("CREAM_DATA_DIR"))
    start = time.perf_counter()
    evaluator.load_tasks([args.mc_task, args.gen_task])
    index_s = time.perf_counter() - start
    print(f"SmolLM2-135M-Instruct, torch threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.2f}; task index + load once: {index_s:.2f} s", flush=True)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    lms = {b: HFLM(pretrained=model, tokenizer=tok, batch_size=b) for b in sizes}
    timed(evaluator, lms[sizes[0]], args.mc_task, 2)  # warm-up
    times: dict[int, list[float]] = {b: [] for b in sizes}
    scores: dict[int, Any] = {}
    for _ in range(args.repeats):
        for b in sizes:
            seconds, rows = timed(evaluator, lms[b], args.mc_task, args.mc_limit)
            times[b].append(seconds)
            scores[b] = [(r["metric"], round(r["value"], 4)) for r in rows]
    for b in sizes:
        med = statistics.median(times[b])
        print(f"  {args.mc_task} batch {b:3d}: {args.mc_limit / med:6.2f} items/s "
              f"(median of {args.repeats}: {', '.join(f'{t:.1f}' for t in times[b])} s) "
              f"scores {scores[b]}", flush=True)
    seconds, rows = timed(evaluator, lms[sizes[0]], args.gen_task, args.gen_limit)
    print(f"  {args.gen_task} batch {sizes[0]}: {args.gen_limit / seconds:6.3f} items/s "
          f"({seconds:.1f} s for {args.gen_limit} items, "
          f"{seconds / args.gen_limit:.1f} s an item) scores "
          f"{[(r['metric'], round(r['value'], 4)) for r in rows]}", flush=True)
    print(f"  load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
