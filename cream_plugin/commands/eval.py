"""``cream eval``: score a model on lm-eval tasks and optionally add the rows to a run's table."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Score a model (path, Hub id or smollm2-135m-instruct) on lm-eval benchmark tasks."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder, .gguf, Hub id or "
                        "smollm2-135m-instruct")
    parser.add_argument("--tasks", nargs="+", default=["cream_benchmarks"],
                        help="lm-eval task or group names (default: cream_benchmarks)")
    parser.add_argument("--limit", type=int, default=None, help="items per task (quick runs)")
    parser.add_argument("--item-seed", type=int, default=None,
                        help="with --limit: a seeded random sample of each task's items (as a "
                        "run does with its seed) instead of the first N")
    parser.add_argument("--generation-limit", type=int, default=None,
                        help="items per generation task (GSM8K, CoT), at most --limit")
    parser.add_argument("--stock-generate", action="store_true",
                        help="greedy generation with lm-eval's own generate path instead of "
                        "cream's decode loop (same strings, slower)")
    parser.add_argument("--num-fewshot", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                        help="hf: in-process transformers model; vllm: vLLM on the path")
    parser.add_argument("--data-dir", default=None,
                        help="local benchmark folder (default: $CREAM_DATA_DIR, else the Hub)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--run-dir", default=None, help="append rows to RUN_DIR/results.jsonl")
    parser.add_argument("--method", default="eval", help="method name in the results table")
    parser.add_argument("--iteration", type=int, default=0, help="iteration in the table")
    parser.add_argument("--json", action="store_true", help="print rows as JSON lines")


def _print_table(rows: list[dict]) -> None:
    print(f"{'TASK':<26}{'METRIC':<28}{'VALUE':>8}{'STDERR':>9}{'SECONDS':>9}")
    for r in rows:
        stderr = "" if r["stderr"] is None else f"{r['stderr']:.4f}"
        print(f"{r['task']:<26}{r['metric']:<28}{r['value']:>8.4f}{stderr:>9}"
              f"{r['seconds']:>9.1f}")


def run(args: argparse.Namespace) -> int:
    from cream_plugin.errors import ConfigError
    from cream_plugin.plugins.registry import get_evaluator

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    config = dict(tasks=args.tasks, limit=args.limit, batch_size=args.batch_size,
                  num_fewshot=args.num_fewshot, data_dir=args.data_dir,
                  generation_limit=args.generation_limit, item_seed=args.item_seed)
    if args.backend == "vllm":
        from cream_plugin.forward.models import resolve_model_path

        path, _ = resolve_model_path(args.model)
        rows = get_evaluator("vllm", **config).evaluate(path)
    else:
        from cream_plugin.forward.models import load_model, load_tokenizer

        tokenizer = load_tokenizer(args.model)
        model = load_model(args.model, dtype=args.dtype, device=args.device)
        evaluator = get_evaluator("lm-eval", **config, decode_loop=not args.stock_generate)
        rows = evaluator.evaluate(model, tokenizer)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        _print_table(rows)
    if args.run_dir:
        from cream_plugin.report.results import append_results

        table = [{"method": args.method, "iteration": args.iteration, **row} for row in rows]
        written = append_results(args.run_dir, table)
        print(f"wrote {len(table)} rows to {written}", file=sys.stderr)
    return 0
