"""Training speed: CREAMTrainer against TRL's DPOTrainer, and the fast path against today's.

Default: step time of CREAMTrainer against DPOTrainer on the same batches, as a ratio. Both
trainers get the same model weights, the same frozen reference model and the same data order;
each is timed over ``--steps`` optimiser steps (after one warm-up step), and the runs are
interleaved ``--repeats`` times so load from other processes hits both alike. A third row times
CREAMTrainer on precomputed reference log-probs (no reference forward at all).

``--paths``: tokens/s of today's path (padded batches, every position through the LM head) and
of the fast path (``padding_free`` packed rows + ``compact_lm_head``, cream_plugin.forward.packing)
for SFT (the seed set), CREAM on precomputed reference columns (the pipeline's implicit-reward
methods), CREAM with a reference forward per step (judge / oracle rewarders) and, with
``--kinds ...,scir``, SCIR; same data, same order, same seed, and the per-step losses of the two
paths side by side. ``--pairs`` takes a run's pairs.jsonl (real lengths, so real padding).

    python benchmarks/bench_trainer.py                      # tiny model, seconds
    CREAM_CACHE_DIR=/tmp/creamcache python benchmarks/bench_trainer.py --model smollm2-135m-instruct
    python benchmarks/bench_trainer.py --paths --model smollm2-135m-instruct \\
        --pairs RUN/cream/iter1/pairs.jsonl --max-length 1024
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROMPTS = [
    "What is two plus three?", "Which gas do plants absorb?", "Write a short poem about the sea.",
    "Please answer step by step: what is 12 times 4?", "Name a colour of the sky.",
    "Which animal jumps over the lazy dog?", "Give one word that rhymes with sea.",
    "What is the capital of France?",
]
GOOD = ["Answer: 5", "Carbon dioxide.", "The waves roll in and out again, under a grey sky.",
        "12 times 4 is 48. Answer: 48", "Blue.", "The quick brown fox.", "Tree.", "Paris."]
BAD = ["The quick brown fox.", "Oxygen, and also helium.", "Score: 4", "Answer: 52", "Seven.",
       "A cat.", "Dog.", "London, I think, or maybe Rome."]


def make_rows(n: int) -> list[dict[str, Any]]:
    return [
        {"prompt": [{"role": "user", "content": PROMPTS[i % 8]}],
         "chosen": [{"role": "assistant", "content": GOOD[i % 8]}],
         "rejected": [{"role": "assistant", "content": BAD[i % 8]}],
         "consistency": (i % 5) / 4, "prompt_id": f"p{i}"}
        for i in range(n)
    ]


def load(name: str) -> tuple[Any, Any]:
    if name == "tiny":
        from cream_plugin.testing import build_tiny_model, build_tiny_tokenizer

        tok = build_tiny_tokenizer()
        return build_tiny_model(tok, hidden_size=64), tok
    from cream_plugin.forward.models import load_model, load_tokenizer

    return load_model(name, device="cpu"), load_tokenizer(name)


def time_steps(kind: str, base: Any, tok: Any, rows: list[dict[str, Any]], args: Any) -> float:
    """Mean seconds per optimiser step after one warm-up step."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from cream_plugin.trainers.cream_trainer import CREAMConfig, CREAMTrainer

    common = dict(output_dir="/tmp/bench-trainer", use_cpu=True, bf16=False, report_to="none",
                  save_strategy="no", max_length=args.max_length, seed=0, disable_tqdm=True,
                  per_device_train_batch_size=args.batch_size, max_steps=args.steps + 1,
                  logging_steps=10_000, log_level="error", learning_rate=1e-6)
    clock = StepClock()
    model = copy.deepcopy(base).train()
    if kind == "dpo":
        trainer: Any = DPOTrainer(model=model, ref_model=copy.deepcopy(base),
                                  args=DPOConfig(**common), processing_class=tok,
                                  train_dataset=Dataset.from_list(rows), callbacks=[clock])
    elif kind == "cream":
        trainer = CREAMTrainer(model=model, ref_model=copy.deepcopy(base),
                               args=CREAMConfig(**common), processing_class=tok,
                               train_dataset=Dataset.from_list(rows), callbacks=[clock])
    else:  # cream on precomputed reference log-probs: fake but fixed values, same cost
        pre = [dict(r, ref_chosen_logps=-30.0, ref_rejected_logps=-31.0) for r in rows]
        trainer = CREAMTrainer(model=model, args=CREAMConfig(**common), processing_class=tok,
                               train_dataset=Dataset.from_list(pre), callbacks=[clock])
    trainer.train()
    return statistics.mean(clock.times[1:])


class StepClock:
    """Seconds per optimiser step (a TrainerCallback, built lazily so importing is cheap)."""

    def __new__(cls) -> Any:
        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def __init__(self) -> None:
                self.times: list[float] = []
                self.start = 0.0

            def on_step_begin(self, *a: Any, **k: Any) -> None:
                self.start = time.perf_counter()

            def on_step_end(self, *a: Any, **k: Any) -> None:
                self.times.append(time.perf_counter() - self.start)

        return Clock()


def load_pairs(path: str | None, n: int) -> list[dict[str, Any]]:
    """``n`` pairs from a run's pairs.jsonl (cycled), else the synthetic rows."""
    if not path:
        return make_rows(n)
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    keep = ("prompt", "chosen", "rejected", "consistency", "ref_chosen_logps",
            "ref_rejected_logps")
    return [{k: rows[i % len(rows)][k] for k in keep if k in rows[0]} for i in range(n)]


def sft_examples(n: int) -> list[dict[str, Any]]:
    from cream_plugin.data import load_rows

    rows = load_rows("seed_sft", "train")  # CREAM_DATA_DIR, else the Hub
    return [rows[i % len(rows)] for i in range(n)]


def padding_share(trainer: Any, batches: int) -> float:
    """Share of padding in the first ``batches`` padded batches of the trainer's data order."""
    real = total = 0
    for i, batch in enumerate(trainer.get_train_dataloader()):
        if i == batches:
            break
        mask = batch["attention_mask"]
        real += int(mask.sum())
        total += mask.numel()
    return 1 - real / total if total else 0.0


def run_path(kind: str, fast: bool, base: Any, tok: Any, data: list[dict[str, Any]],
             args: Any) -> dict[str, Any]:
    """Train ``--steps`` + 1 steps on one path; the timed steps' seconds, tokens and losses."""
    from datasets import Dataset

    from cream_plugin.trainers.cream_trainer import CREAMConfig, CREAMTrainer
    from cream_plugin.trainers.scir_trainer import SCIRConfig, SCIRTrainer
    from cream_plugin.trainers.sft import build_sft_trainer

    clock = StepClock()
    model = copy.deepcopy(base).train()
    common = dict(use_cpu=True, bf16=False, report_to="none", save_strategy="no", seed=0,
                  disable_tqdm=True, max_steps=args.steps + 1, logging_steps=1,
                  log_level="error")
    if kind == "sft":
        trainer: Any = build_sft_trainer(
            model, tok, data, "/tmp/bench-trainer-sft", epochs=1, learning_rate=2e-5,
            batch_size=args.sft_batch_size, max_length=args.max_length, seed=0, progress=False,
            padding_free=fast, compact_lm_head=fast,
            extra_args={k: v for k, v in common.items() if k not in ("seed", "use_cpu", "bf16",
                                                                     "disable_tqdm")})
        trainer.add_callback(clock)
    else:
        rows = data
        ref_model = None
        if kind != "cream":  # cream-ref and scir: a reference forward every step
            rows = [{k: v for k, v in r.items() if not k.startswith("ref_")} for r in data]
            ref_model = copy.deepcopy(base)
        cls, cfg_cls = (SCIRTrainer, SCIRConfig) if kind == "scir" else (CREAMTrainer,
                                                                         CREAMConfig)
        cfg = cfg_cls(output_dir="/tmp/bench-trainer", max_length=args.max_length,
                      per_device_train_batch_size=args.batch_size, learning_rate=1e-6,
                      padding_free=fast, compact_lm_head=fast,
                      **({"consistency_mode": "none"} if kind == "scir" else {}), **common)
        trainer = cls(model=model, ref_model=ref_model, args=cfg, processing_class=tok,
                      train_dataset=Dataset.from_list(rows), callbacks=[clock])
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # logging_steps=1 is for the losses, not stdout
    pad = padding_share(trainer, args.steps + 1)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h and "num_tokens" in h]
    tokens = logs[-1]["num_tokens"] - logs[0]["num_tokens"]
    packed = getattr(trainer.model.forward, "packed_calls", 0)
    return {"seconds": sum(clock.times[1:]), "tokens": tokens, "losses": [h["loss"] for h in logs],
            "padding": pad, "packed_calls": packed}


def compare_paths(args: Any, base: Any, tok: Any) -> None:
    """Today's path against the fast path, interleaved ``--repeats`` times per kind."""
    n_pairs = args.batch_size * (args.steps + 1)
    pairs = load_pairs(args.pairs, n_pairs)
    sft = sft_examples(args.sft_batch_size * (args.steps + 1))
    kinds = [k for k in args.kinds.split(",") if k]
    print(f"model={args.model} steps={args.steps} (+1 warm-up) repeats={args.repeats} "
          f"batch={args.batch_size} pairs, sft_batch={args.sft_batch_size}, "
          f"max_length={args.max_length}, threads={args.threads}, pairs from "
          f"{args.pairs or 'synthetic rows'}")
    for kind in kinds:
        data = sft if kind == "sft" else pairs
        runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for _ in range(args.repeats):
            for fast in (False, True):
                runs[fast].append(run_path(kind, fast, base, tok, data, args))
        today, new = runs[False], runs[True]
        ratios = [(n["tokens"] / n["seconds"]) / (t["tokens"] / t["seconds"])
                  for t, n in zip(today, new, strict=True)]
        diff = max(abs(a - b) for t, n in zip(today, new, strict=True)
                   for a, b in zip(t["losses"], n["losses"], strict=True))
        for label, rs in (("today", today), ("fast ", new)):
            tps = statistics.median(r["tokens"] / r["seconds"] for r in rs)
            print(f"{kind:9s} {label}  {tps:8.1f} tokens/s  padding {rs[0]['padding']:.1%}  "
                  f"packed forwards {rs[0]['packed_calls']}")
        print(f"{kind:9s} speed-up {statistics.median(ratios):.2f}x  (per repeat: "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")
        print(f"{kind:9s} losses today {[round(x, 5) for x in today[0]['losses']]}")
        print(f"{kind:9s} losses fast  {[round(x, 5) for x in new[0]['losses']]}  "
              f"max |diff| {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny' or a model spec for load_model")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the box is shared)")
    parser.add_argument("--paths", action="store_true",
                        help="today's path against the fast path (tokens/s, losses)")
    parser.add_argument("--kinds", default="sft,cream,cream-ref",
                        help="with --paths: sft, cream, cream-ref, scir (comma-separated)")
    parser.add_argument("--pairs", default=None, help="with --paths: a run's pairs.jsonl")
    parser.add_argument("--sft-batch-size", type=int, default=8)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base, tok = load(args.model)
    if args.paths:
        compare_paths(args, base, tok)
        return
    rows = make_rows(args.batch_size * (args.steps + 1))
    results: dict[str, list[float]] = {"dpo": [], "cream": [], "cream-precomputed": []}
    for _ in range(args.repeats):
        for kind in results:
            results[kind].append(time_steps(kind, base, tok, rows, args))
    print(f"model={args.model} batch={args.batch_size} steps={args.steps} repeats={args.repeats}")
    for kind, times in results.items():
        # ratio per repeat (runs of one repeat are back to back), then the median over repeats
        ratios = [t / d for t, d in zip(times, results["dpo"], strict=True)]
        print(f"{kind:18s} median step {statistics.median(times) * 1000:8.1f} ms   "
              f"ratio vs dpo {statistics.median(ratios):5.3f}   "
              f"(per-repeat ratios: {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
