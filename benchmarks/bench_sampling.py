"""Benchmark: HFSampler new tokens/s against a naive ``model.generate`` call (batch 8) and against
the forward-pass floor (batched forward tokens/s of the same model), measured in the same run.

Run:  python benchmarks/bench_sampling.py [--prompts 16 --responses 5 --max-new-tokens 64]
Rounds are interleaved (forward, generate, sampler, forward, ...) and medians reported, so load
from other processes hits every figure alike. The sampler's tokens are also checked against HF
``generate`` driven by the same per-row Gumbel-max sampler (the previous implementation).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def seed_prompts(p: int) -> list[Any]:
    """The first ``p`` user turns of the local seed SFT data (chat prompts)."""
    from cream_plugin.data import load_rows

    data_dir = os.environ.get("CREAM_DATA_DIR") or str(
        Path(__file__).resolve().parents[2] / "shared" / "data")
    rows = load_rows("seed_sft", "train", data_dir)
    return [[m for m in row["messages"] if m["role"] != "assistant"] for row in rows[:p]]


def forward_floor(model: Any, batch: Any) -> float:
    """Tokens/s of one plain batched forward (all positions, no cache): the compute floor."""
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        model(**batch, use_cache=False)
    return float(batch["attention_mask"].sum()) / (time.perf_counter() - start)


def naive_generate(model: Any, tok: Any, texts: list[str], args: Any) -> float:
    """New tokens/s of one ``model.generate`` call (sampling, left padding) on ``texts``."""
    import torch

    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=True, temperature=args.temperature,
                             top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                             pad_token_id=tok.pad_token_id)
    seconds = time.perf_counter() - start
    new = out[:, enc["input_ids"].shape[1]:]
    stop = new == tok.eos_token_id
    tokens = int(((stop.cumsum(-1) == 0).sum(-1) + stop.any(-1).long()).sum())
    return tokens / seconds


def sampler_rate(model: Any, tok: Any, prompts: list[Any], args: Any) -> tuple[float, Any]:
    from cream_plugin.forward.sampling import HFSampler

    sampler = HFSampler(model, tok, temperature=args.temperature, top_p=args.top_p,
                        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                        progress=False)
    start = time.perf_counter()
    out = sampler.generate(prompts, args.responses, seed=0)
    return sampler.stats["new_tokens"] / (time.perf_counter() - start), out


def reference_outputs(model: Any, tok: Any, prompts: list[Any], args: Any) -> list[list[str]]:
    """The previous sampler: HF ``generate`` per prompt with the full-vocabulary row sampler."""
    import torch
    from transformers import LogitsProcessorList

    from cream_plugin.forward.sampling import (
        HFSampler,
        _RowSampler,
        prompt_keys,
        render_prompt,
        row_seed,
    )

    class Reference:
        def __init__(self, seeds: list[int]) -> None:
            self.rows = _RowSampler(seeds, args.temperature, args.top_p)

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            scores = scores.float() / args.temperature
            best = self.rows._full(scores, self.rows._uniforms(scores.shape[-1]))
            return torch.full_like(scores, float("-inf")).scatter(1, best[:, None], 0.0)

    helper = HFSampler(model, tok, max_new_tokens=args.max_new_tokens, progress=False)
    texts = [render_prompt(tok, p) for p in prompts]
    keys = prompt_keys(texts)
    results = []
    for text, key in zip(texts, keys, strict=True):
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        seeds = [row_seed(0, key, j) for j in range(args.responses)]
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids["input_ids"].repeat(args.responses, 1),
                attention_mask=ids["attention_mask"].repeat(args.responses, 1),
                do_sample=False, max_new_tokens=args.max_new_tokens,
                pad_token_id=tok.pad_token_id,
                logits_processor=LogitsProcessorList([Reference(seeds)]))
        width = ids["input_ids"].shape[1]
        results.append([helper._decode(row[width:].tolist(), helper._stop_ids()) for row in out])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--responses", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=80, help="HFSampler rows per batch")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-prompts", type=int, default=4,
                        help="prompts whose tokens are checked against the generate reference")
    args = parser.parse_args()
    import torch

    from cream_plugin.forward.models import load_model, load_tokenizer
    from cream_plugin.forward.sampling import render_prompt

    torch.manual_seed(0)
    tok = load_tokenizer()
    model = load_model(device="cpu").eval()
    prompts = seed_prompts(args.prompts)
    texts = [render_prompt(tok, p) for p in prompts]
    tok.padding_side = "right"
    fwd_batch = tok(texts[:8], return_tensors="pt", padding=True, add_special_tokens=False)
    print(f"SmolLM2-135M-Instruct, torch threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.2f}; {args.prompts} prompts x {args.responses} responses, "
          f"max_new_tokens {args.max_new_tokens}, T {args.temperature}, top_p {args.top_p}")
    naive_generate(model, tok, texts[:2], argparse.Namespace(**{**vars(args), "max_new_tokens": 2}))
    rates: dict[str, list[float]] = {"forward": [], "generate-b8": [], "sampler": []}
    out: Any = None
    for _ in range(args.repeats):
        rates["forward"].append(forward_floor(model, fwd_batch))
        rates["generate-b8"].append(naive_generate(model, tok, texts[:8], args))
        rate, out = sampler_rate(model, tok, prompts, args)
        rates["sampler"].append(rate)
    med = {k: statistics.median(v) for k, v in rates.items()}
    for name, values in rates.items():
        print(f"  {name:12s} median {med[name]:8.1f} tokens/s  "
              f"(rounds: {', '.join(f'{v:.1f}' for v in values)})")
    gen_ratio = statistics.median(
        s / g for s, g in zip(rates["sampler"], rates["generate-b8"], strict=True))
    floor_ratio = statistics.median(
        s / f for s, f in zip(rates["sampler"], rates["forward"], strict=True))
    print(f"  sampler / generate-b8 = {gen_ratio:.2f} (goal >= 3)   "
          f"sampler / forward floor = {floor_ratio:.2f} (goal >= 0.5)")
    k = args.check_prompts
    if k:
        ref = reference_outputs(model, tok, prompts[:k], args)
        same = sum(a == b for r, o in zip(ref, out[:k], strict=True)
                   for a, b in zip(r, o, strict=True))
        print(f"  tokens identical to the generate-based sampler: {same}/{k * args.responses}")
    print(f"  load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
