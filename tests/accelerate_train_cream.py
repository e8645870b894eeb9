"""Launched by tests/test_trainer_accelerate.py: a short CREAM run whose weights each rank saves.

Usage: accelerate launch --multi_gpu --num_processes N tests/accelerate_train_cream.py MODEL_DIR
OUT_DIR PER_DEVICE_BATCH. The config sets use_cpu=True, so the N processes train on CPU over
gloo (``accelerate launch --cpu`` alone starts one process unless run through mpirun). Four
pairs, two epochs, global batch 4: every step sees all four pairs, so any number of processes
with the same global batch must end with the same weights.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(model_dir: str, out_dir: str, per_device_batch: int) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cream_plugin.trainers.cream_trainer import CREAMConfig, CREAMTrainer

    prompts = ["What is two plus three?", "Which gas do plants absorb?",
               "Write a short poem about the sea.", "Please answer step by step."]
    good = ["Answer: 5", "B carbon dioxide", "The waves roll in and out again.", "Answer: B"]
    bad = ["The quick brown fox.", "A. oxygen", "Score: 4", "jumps over the lazy dog"]
    rows = [
        {"prompt": [{"role": "user", "content": p}],
         "chosen": [{"role": "assistant", "content": g}],
         "rejected": [{"role": "assistant", "content": b}],
         "consistency": c, "prompt_id": f"p{i}"}
        for i, (p, g, b, c) in enumerate(zip(prompts, good, bad, [0.2, 0.6, 0.9, 1.0], strict=True))
    ]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = CREAMConfig(
        output_dir=out_dir, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
        max_length=64, per_device_train_batch_size=per_device_batch, num_train_epochs=2,
        optim="sgd", learning_rate=0.5, lr_scheduler_type="constant", max_grad_norm=0.0,
        beta=0.5, seed=0, logging_steps=1, disable_tqdm=True,
    )
    trainer = CREAMTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                           processing_class=tokenizer)
    trainer.train()
    rank = trainer.accelerator.process_index
    state = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    torch.save({"num_processes": trainer.accelerator.num_processes,
                "state": {k: v.detach().cpu() for k, v in state.items()}},
               os.path.join(out_dir, f"rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
