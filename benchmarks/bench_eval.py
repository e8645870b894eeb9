"""Benchmark: evaluation items/s per task with the in-memory lm-eval evaluator (SmolLM2-135M).

Run:  python benchmarks/bench_eval.py [--mc-limit 40 --gen-limit 48 --mc-batch-size 16]
The task index is built once (its time is reported) and reused; the model stays in memory.
Multiple-choice tasks: lm-eval's stock HFLM against CreamHFLM (``cream-hf``: each context run
once, the choices batched over its KV cache) at the same batch size on the same items, timed
interleaved (HFLM, cream-hf, HFLM, ...), medians reported; wall items/s and the ratio of process
CPU seconds (steadier than wall time on a shared machine), with every per-request
log-likelihood, is-greedy flag and score compared.
GSM8K: lm-eval's stock HFLM (``generate``) against DecodeLoopHFLM at the same batch size on the
same items, with the generations and the scores compared (``--gen-task ""`` skips it).
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


def answers(lm: Any) -> list[tuple[float, bool]]:
    """Make ``lm`` keep a copy of every (log-likelihood, is greedy) it returns."""
    kept: list[tuple[float, bool]] = []
    original = lm.loglikelihood

    def loglikelihood(requests: Any, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool]] = original(requests, disable_tqdm=disable_tqdm)
        kept.extend(out)
        return out

    lm.loglikelihood = loglikelihood
    return kept


def compare_mc(evaluator: Any, lms: dict[str, Any], task: str, limit: int, repeats: int) -> None:
    """Interleaved timings of each LM on ``task``; the second LM checked against the first."""
    wall: dict[str, list[float]] = {name: [] for name in lms}
    cpu: dict[str, list[float]] = {name: [] for name in lms}
    found: dict[str, Any] = {}
    for _ in range(repeats):
        for name, lm in lms.items():
            kept = answers(lm)
            cpu_start = time.process_time()
            seconds, rows = timed(evaluator, lm, task, limit)
            cpu[name].append(time.process_time() - cpu_start)
            wall[name].append(seconds)
            found[name] = (scores(rows), list(kept))
            del lm.loglikelihood  # back to the class's method
    (base, (base_scores, base_ll)), (new, (new_scores, new_ll)) = found.items()
    for name in lms:
        med = statistics.median(wall[name])
        print(f"  {task:20s} {name:9s}: {limit / med:6.2f} items/s (wall, median of {repeats}: "
              f"{', '.join(f'{t:.1f}' for t in wall[name])} s; CPU "
              f"{statistics.median(cpu[name]):.1f} s) scores {found[name][0]}", flush=True)
    diff = max((abs(a[0] - b[0]) for a, b in zip(new_ll, base_ll, strict=True)), default=0.0)
    greedy = sum(a[1] == b[1] for a, b in zip(new_ll, base_ll, strict=True))
    speed = statistics.median(wall[base]) / statistics.median(wall[new])
    cpu_speed = statistics.median(cpu[base]) / statistics.median(cpu[new])
    print(f"  {task}: {new} / {base} speed = {speed:.2f} wall, {cpu_speed:.2f} CPU (goal >= 2); "
          f"{len(base_ll)} requests, max |log-likelihood diff| {diff:.1e} (goal <= 1e-4), "
          f"is-greedy identical {greedy}/{len(base_ll)}, scores identical: "
          f"{new_scores == base_scores}", flush=True)


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
    parser.add_argument("--mc-limit", type=int, default=40)
    parser.add_argument("--gen-limit", type=int, default=48)
    parser.add_argument("--mc-batch-size", type=int, default=16)
    parser.add_argument("--gen-batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch
    from lm_eval.models.huggingface import HFLM

    from cream_plugin.evaluators.cream_hflm import CreamHFLM
    from cream_plugin.evaluators.decode_loop_hflm import DecodeLoopHFLM
    from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator
    from cream_plugin.forward.models import load_model, load_tokenizer

    tok = load_tokenizer()
    model = load_model(device="cpu").eval()
    evaluator = LMEvalEvaluator(data_dir=os.environ.get("CREAM_DATA_DIR"))
    mc_tasks = [t for t in args.mc_tasks.split(",") if t]
    start = time.perf_counter()
    evaluator.load_tasks([*mc_tasks, *([args.gen_task] if args.gen_task else [])])
    index_s = time.perf_counter() - start
    print(f"SmolLM2-135M-Instruct, torch threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.2f}; task index + load once: {index_s:.2f} s", flush=True)
    b = args.mc_batch_size
    mc_lms = {"HFLM": HFLM(pretrained=model, tokenizer=tok, batch_size=b),
              "cream-hf": CreamHFLM(pretrained=model, tokenizer=tok, batch_size=b)}
    if mc_tasks:
        print(f"  multiple choice, batch {b}, {args.mc_limit} items per task:", flush=True)
        timed(evaluator, mc_lms["cream-hf"], mc_tasks[0], 2)  # warm-up
    for task in mc_tasks:
        compare_mc(evaluator, mc_lms, task, args.mc_limit, args.repeats)
    if not args.gen_task:
        print(f"  load average at the end {os.getloadavg()[0]:.2f}")
        return
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
