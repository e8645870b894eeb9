"""Benchmark: evaluation items/s per task with the in-memory lm-eval evaluator (SmolLM2-135M).

Run:  python benchmarks/bench_eval.py [--mc-limit 32 --gen-limit 48 --batch-sizes 16,64]
The task index is built once (its time is reported) and reused; the model stays in memory.
Multiple-choice tasks: batch sizes timed interleaved (A, B, A, B), medians reported.
GSM8K: lm-eval's stock HFLM (``generate``) against DecodeLoopHFLM at the same batch size on the
same items, with the generations and the scores compared.
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

MC_TASKS = ["cream_arc_easy", "cream_arc_challenge", "cream_openbookqa", "cream_siqa"]


def timed(evaluator: Any, lm: Any, task: str, limit: int) -> tuple[float, list[dict[str, Any]]]:
    start = time.perf_counter()
    rows = evaluator.evaluate_lm(lm, tasks=[task], limit=limit, bootstrap_iters=0)
    return time.perf_counter() - start, rows


def recording(lm: Any) -> list[str]:
    """Make ``lm`` keep a copy of every generation it returns (in request order)."""
    generations: list[str] = []
    original = lm.generate_until

    def generate_until(requests: Any, disable_tqdm: bool = False) -> list[str]:
        out: list[str] = original(requests, disable_tqdm=disable_tqdm)
        generations.extend(out)
        return out

    lm.generate_until = generate_until
    return generations


def scores(rows: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(r["metric"], round(r["value"], 4)) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mc-tasks", default=",".join(MC_TASKS))
    parser.add_argument("--gen-task", default="cream_gsm8k")
    parser.add_argument("--mc-limit", type=int, default=32)
    parser.add_argument("--gen-limit", type=int, default=48)
    parser.add_argument("--batch-sizes", default="16,64", help="multiple-choice batch sizes")
    parser.add_argument("--gen-batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch
    from lm_eval.models.huggingface import HFLM

    from cream_plugin.evaluators.decode_loop_hflm import DecodeLoopHFLM
    from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator
    from cream_plugin.models import load_model, load_tokenizer

    tok = load_tokenizer()
    model = load_model(device="cpu").eval()
    evaluator = LMEvalEvaluator(data_dir=os.environ.get("CREAM_DATA_DIR"))
    mc_tasks = [t for t in args.mc_tasks.split(",") if t]
    start = time.perf_counter()
    evaluator.load_tasks([*mc_tasks, args.gen_task])
    index_s = time.perf_counter() - start
    print(f"SmolLM2-135M-Instruct, torch threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.2f}; task index + load once: {index_s:.2f} s", flush=True)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    lms = {b: DecodeLoopHFLM(pretrained=model, tokenizer=tok, batch_size=b) for b in sizes}
    if mc_tasks:
        timed(evaluator, lms[sizes[0]], mc_tasks[0], 2)  # warm-up
    for task in mc_tasks:
        times: dict[int, list[float]] = {b: [] for b in sizes}
        found: dict[int, Any] = {}
        for _ in range(args.repeats):
            for b in sizes:
                seconds, rows = timed(evaluator, lms[b], task, args.mc_limit)
                times[b].append(seconds)
                found[b] = scores(rows)
        for b in sizes:
            med = statistics.median(times[b])
            print(f"  {task:20s} batch {b:3d}: {args.mc_limit / med:6.2f} items/s "
                  f"(median of {args.repeats}: {', '.join(f'{t:.1f}' for t in times[b])} s) "
                  f"scores {found[b]}", flush=True)

    n, b = args.gen_limit, args.gen_batch_size
    stock = HFLM(pretrained=model, tokenizer=tok, batch_size=b)
    fast = DecodeLoopHFLM(pretrained=model, tokenizer=tok, batch_size=b)
    runs = {}
    for name, lm in (("decode-loop", fast), ("stock HFLM", stock)):
        generations = recording(lm)
        seconds, rows = timed(evaluator, lm, args.gen_task, n)
        runs[name] = (seconds, generations, scores(rows))
        print(f"  {args.gen_task:20s} batch {b:3d} {name:11s}: {n / seconds:6.3f} items/s "
              f"({seconds:.1f} s for {n} items, {seconds / n:.1f} s an item) "
              f"scores {runs[name][2]}", flush=True)
    (fast_s, fast_gen, fast_scores), (stock_s, stock_gen, stock_scores) = runs.values()
    same = sum(a == c for a, c in zip(fast_gen, stock_gen, strict=True))
    print(f"  {args.gen_task}: decode-loop / stock HFLM speed = {stock_s / fast_s:.2f} "
          f"(goal >= 2); generations identical {same}/{len(stock_gen)}; scores identical: "
          f"{fast_scores == stock_scores}; new tokens decoded {fast.decode_stats['new_tokens']}")
    print(f"  load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
