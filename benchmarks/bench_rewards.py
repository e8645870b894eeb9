"""Benchmark: implicit-reward log-probs (batched, fused head) vs a one-sequence-at-a-time loop,
and consistency + pair building for 20,000 prompts x 5 responses.

Run:  python benchmarks/bench_rewards.py [--prompts 8 --responses 4] [--skip-model]
The model part uses the built-in SmolLM2-135M-Instruct (CREAM_CACHE_DIR for its converted copy)
and the local seed data (CREAM_DATA_DIR, else ../shared/data). Figures are ratios against the
baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _seed_table(p: int, n: int) -> tuple[list[Any], list[list[str]]]:
    from cream_plugin.data import load_rows

    data_dir = os.environ.get("CREAM_DATA_DIR") or str(
        Path(__file__).resolve().parents[2] / "shared" / "data")
    rows = load_rows("seed_sft", "train", data_dir)
    prompts = [[m for m in row["messages"] if m["role"] != "assistant"] for row in rows[:p]]
    answers = [row["messages"][-1]["content"] for row in rows[p:p + p * n]]
    rng = np.random.default_rng(0)
    responses = []
    for i in range(p):
        row = []
        for j in range(n):
            words = answers[i * n + j].split()
            row.append(" ".join(words[: int(rng.integers(10, 80))]))
        responses.append(row)
    return prompts, responses


def _loop_baseline(model: Any, tokenizer: Any, prompts: list[Any], responses: list[list[str]]
                   ) -> tuple[np.ndarray, int]:
    """One sequence at a time: full logits, log_softmax, gather the completion tokens."""
    import torch

    from cream_plugin.logprobs import tokenize_example

    out = np.zeros((len(prompts), len(responses[0])))
    tokens = 0
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            for j, response in enumerate(responses[i]):
                ids, start = tokenize_example(tokenizer, prompt, response)
                logits = model(input_ids=torch.tensor([ids])).logits[0]
                logps = torch.log_softmax(logits.float(), dim=-1)[start - 1 : -1]
                out[i, j] = float(logps.gather(1, torch.tensor(ids[start:])[:, None]).sum())
                tokens += len(ids)
    return out, tokens


def bench_model(p: int, n: int, batch_size: int) -> None:
    import torch

    from cream_plugin.logprobs import response_logps, tokenize_example
    from cream_plugin.models import load_model, load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer()
    model = load_model(device="cpu")
    prompts, responses = _seed_table(p, n)
    total_tokens = sum(len(tokenize_example(tokenizer, pr, r)[0])
                       for pr, row in zip(prompts, responses, strict=True) for r in row)
    print(f"SmolLM2-135M, {p} prompts x {n} responses = {p * n} sequences, "
          f"{total_tokens} tokens, torch threads {torch.get_num_threads()}")
    response_logps(model, tokenizer, prompts[:1], responses[:1], progress=False)  # warm-up

    t0 = time.perf_counter()
    base, _ = _loop_baseline(model, tokenizer, prompts, responses)
    t_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = response_logps(model, tokenizer, prompts, responses, batch_size=1, progress=False)
    t_single = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = response_logps(model, tokenizer, prompts, responses, batch_size=batch_size,
                             progress=False)
    t_batched = time.perf_counter() - t0
    err = max(np.abs(batched.sum - base).max(), np.abs(single.sum - base).max())
    print(f"  one-at-a-time loop (full logits): {total_tokens / t_loop:8.1f} tokens/s "
          f"({t_loop:.2f} s)  [baseline]")
    print(f"  response_logps batch_size=1     : {total_tokens / t_single:8.1f} tokens/s "
          f"({t_single:.2f} s)  x{t_loop / t_single:.2f}")
    print(f"  response_logps batch_size={batch_size:<5d}: {total_tokens / t_batched:8.1f} tokens/s "
          f"({t_batched:.2f} s)  x{t_loop / t_batched:.2f}")
    print(f"  max |difference| to the baseline log-probs: {err:.2e}")


def bench_tables(p: int, n: int) -> None:
    from cream_plugin.consistency import consistency_rate
    from cream_plugin.pairs import build_pairs

    rng = np.random.default_rng(0)
    current = rng.normal(size=(p, n)).round(1)  # rounding gives ties
    previous = current + rng.normal(scale=0.5, size=(p, n))
    previous[rng.random((p, n)) < 0.001] = np.nan
    ids = [f"p{i}" for i in range(p)]
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(p)]
    responses = [[f"response {i}.{j}" for j in range(n)] for i in range(p)]
    print(f"consistency + pairs, {p} prompts x {n} responses")
    for metric in ("kendall", "spearman", "toporder"):
        t0 = time.perf_counter()
        result = consistency_rate(current, previous, metric)
        t1 = time.perf_counter()
        pairs = build_pairs(ids, prompts, responses, current, result.as_mapping(ids))
        t2 = time.perf_counter()
        print(f"  {metric:9s}: {(t2 - t0) * 1000:7.1f} ms in all (target < 1000 ms): "
              f"consistency {(t1 - t0) * 1000:.1f} ms, pairs {(t2 - t1) * 1000:.1f} ms; "
              f"mean C {result.mean:.3f}, {len(pairs)} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--responses", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--table-prompts", type=int, default=20_000)
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    bench_tables(args.table_prompts, 5)
    if not args.skip_model:
        bench_model(args.prompts, args.responses, args.batch_size)


if __name__ == "__main__":
    main()
