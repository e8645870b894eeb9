"""Step time of CREAMTrainer against TRL's DPOTrainer on the same batches, as a ratio.

Both trainers get the same model weights, the same frozen reference model and the same data
order; each is timed over ``--steps`` optimiser steps (after one warm-up step), and the runs are
interleaved ``--repeats`` times so load from other processes hits both alike. A third row times
CREAMTrainer on precomputed reference log-probs (no reference forward at all).

    python benchmarks/bench_trainer.py                      # tiny model, seconds
    CREAM_CACHE_DIR=/tmp/creamcache python benchmarks/bench_trainer.py --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import copy
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
    from cream_plugin.models import load_model, load_tokenizer

    return load_model(name, device="cpu"), load_tokenizer(name)


def time_steps(kind: str, base: Any, tok: Any, rows: list[dict[str, Any]], args: Any) -> float:
    """Mean seconds per optimiser step after one warm-up step."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from cream_plugin.trainer import CREAMConfig, CREAMTrainer

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.times.append(time.perf_counter() - self.start)

    common = dict(output_dir="/tmp/bench-trainer", use_cpu=True, bf16=False, report_to="none",
                  save_strategy="no", max_length=args.max_length, seed=0, disable_tqdm=True,
                  per_device_train_batch_size=args.batch_size, max_steps=args.steps + 1,
                  logging_steps=10_000, log_level="error", learning_rate=1e-6)
    clock = Clock()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny' or a model spec for load_model")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the box is shared)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base, tok = load(args.model)
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
