"""Benchmark: implicit-reward log-probs against a plain batched forward over the same tokens,
forward tokens spent per call, and consistency + pairs for 20,000 prompts x 5 responses.

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

    from cream_plugin.forward.logprobs import tokenize_example

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


def _plain_forward(model: Any, seqs: list[list[int]], batch_size: int, pad_id: int) -> None:
    """The baseline: a plain batched forward (logits at every position) over the same batches."""
    import torch

    seqs = sorted(seqs, key=len, reverse=True)
    with torch.no_grad():
        for k in range(0, len(seqs), batch_size):
            batch = seqs[k:k + batch_size]
            ids = torch.full((len(batch), len(batch[0])), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, row in enumerate(batch):
                ids[r, :len(row)] = torch.tensor(row)
                mask[r, :len(row)] = 1
            model(input_ids=ids, attention_mask=mask, use_cache=False)


def bench_model(p: int, n: int, batch_size: int, repeats: int) -> None:
    import statistics

    import torch

    from cream_plugin.forward.logprobs import (
        FORWARD_STATS,
        LogProbCache,
        response_logps,
        tokenize_example,
    )
    from cream_plugin.forward.models import load_model, load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer()
    model = load_model(device="cpu").eval()
    prompts, responses = _seed_table(p, n)
    seqs = [tokenize_example(tokenizer, pr, r)[0]
            for pr, row in zip(prompts, responses, strict=True) for r in row]
    total_tokens = sum(len(s) for s in seqs)
    print(f"SmolLM2-135M, {p} prompts x {n} responses = {p * n} sequences, "
          f"{total_tokens} tokens, torch threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.2f}")
    response_logps(model, tokenizer, prompts[:1], responses[:1], progress=False)  # warm-up
    pad = tokenizer.pad_token_id
    times: dict[str, list[float]] = {"plain forward": [], "response_logps": []}
    for _ in range(repeats):  # interleaved: plain, ours, plain, ours, ...
        t0 = time.perf_counter()
        _plain_forward(model, seqs, batch_size, pad)
        times["plain forward"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = response_logps(model, tokenizer, prompts, responses, batch_size=batch_size,
                              progress=False)
        times["response_logps"].append(time.perf_counter() - t0)
    for name, values in times.items():
        print(f"  {name:15s} batch {batch_size}: {total_tokens / statistics.median(values):8.1f} "
              f"tokens/s (median of {repeats}: {', '.join(f'{v:.2f}' for v in values)} s)")
    ratio = statistics.median(
        b / a for a, b in zip(times["response_logps"], times["plain forward"], strict=True))
    print(f"  response_logps / plain forward throughput = {ratio:.2f} (goal >= 0.90)")

    base, _ = _loop_baseline(model, tokenizer, prompts[:2], responses[:2])
    err = np.abs(ours.sum[:2] - base).max()
    print(f"  max |difference| to full-logits log_softmax log-probs: {err:.2e}")

    # Forward-token accounting: a fresh cache scores each distinct pair once, a repeat is free.
    cache = LogProbCache()
    doubled_prompts, doubled = prompts + prompts[:1], responses + responses[:1]
    FORWARD_STATS.clear()
    response_logps(model, tokenizer, doubled_prompts, doubled, batch_size=batch_size,
                   progress=False, cache=cache, model_key="m0")
    first = dict(FORWARD_STATS)
    response_logps(model, tokenizer, prompts, responses, batch_size=batch_size, progress=False,
                   cache=cache, model_key="m0")
    again = FORWARD_STATS["tokens"] - first["tokens"]
    print(f"  forward tokens spent: {first['tokens']} for {first['sequences']} sequences "
          f"(each pair as its own sequence: {total_tokens} for {len(seqs)} distinct pairs; "
          "each prompt runs once under the prompt trees, and the table also repeats "
          f"one prompt row, scored once), padding {first['padding']}, "
          f"LM-head positions {first['scored']}; "
          f"a second call on the cache: {again} tokens")


def bench_tables(p: int, n: int) -> None:
    from cream_plugin.ranking.consistency import consistency_rate
    from cream_plugin.ranking.pairs import build_pairs

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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    bench_tables(args.table_prompts, 5)
    if not args.skip_model:
        bench_model(args.prompts, args.responses, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
