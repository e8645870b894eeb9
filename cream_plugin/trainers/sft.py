"""Supervised fine-tuning of M0 into M1 on the seed set, with TRL's SFTTrainer.

Seed rows are chat conversations; each is split into a conversational prompt (every turn but
the last) and completion (the final assistant turn), so TRL's completion-only loss masks the
prompt tokens with -100 (the reference code masked them with the pad id, which trains on them
whenever pad != -100 and, with pad = eos, also hides the EOS the model must learn to emit).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cream_plugin.errors import DataError


def to_prompt_completion(examples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed rows ``{messages}`` (or already ``{prompt, completion}``) -> prompt/completion."""
    converted = []
    for index, row in enumerate(examples):
        if "prompt" in row and "completion" in row:
            converted.append({"prompt": row["prompt"], "completion": row["completion"]})
            continue
        messages = row.get("messages")
        where = f"SFT example {index} (id {row.get('id', '?')})"
        if not isinstance(messages, list) or len(messages) < 2:
            raise DataError(f"{where}: needs 'messages' with a prompt turn and an assistant turn")
        if not isinstance(messages[-1], dict) or messages[-1].get("role") != "assistant":
            raise DataError(f"{where}: the last message must be the assistant's answer")
        converted.append({"prompt": list(messages[:-1]), "completion": [messages[-1]]})
    if not converted:
        raise DataError("no SFT examples given")
    return converted


def build_sft_trainer(
    model: Any,
    tokenizer: Any,
    examples: Sequence[dict[str, Any]],
    output_dir: str | os.PathLike[str],
    *,
    epochs: float = 3.0,
    learning_rate: float = 2e-5,
    batch_size: int = 8,
    max_length: int = 1024,
    seed: int = 42,
    gradient_accumulation_steps: int = 1,
    warmup_ratio: float = 0.0,
    progress: bool = True,
    padding_free: bool = False,
    compact_lm_head: bool = True,
    extra_args: dict[str, Any] | None = None,
) -> Any:
    """An SFTTrainer with completion-only loss on the seed conversations (not yet trained).

    ``padding_free`` packs each batch into unpadded rows and ``compact_lm_head`` projects only
    completion positions (:mod:`cream_plugin.forward.packing`; the same loss within float rounding).
    This is not SFTConfig's ``padding_free``, which puts the whole batch in one row (attention
    over the batch's total length) and leaves ``max_length`` unenforced. ``extra_args`` are
    further SFTConfig fields (e.g. the tracking settings). It carries a
    :class:`~cream_plugin.trainers.cream_utils.NonFiniteGuard` (stage "SFT"), so a NaN or infinite
    loss or gradient stops training before any weight changes.
    """
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list(to_prompt_completion(examples))
    values: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        warmup_steps=min(warmup_ratio, 0.999),  # a float < 1 is a ratio in transformers 5
        max_length=max_length,
        seed=seed,
        data_seed=seed,
        completion_only_loss=True,
        packing=False,
        save_strategy="no",
        report_to=[],
        logging_steps=1,
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        fp16=False,
    )
    values.update(extra_args or {})
    config = SFTConfig(**values)
    from cream_plugin.trainers.cream_utils import NonFiniteGuard

    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset,
                         processing_class=tokenizer)
    from cream_plugin.forward.fast_forward import install_on_trainer

    install_on_trainer(trainer, padding_free=padding_free, compact_lm_head=compact_lm_head)
    NonFiniteGuard.attach(trainer, stage="SFT")  # stops at a NaN/inf loss or gradient
    return trainer


def run_sft(
    model: Any,
    tokenizer: Any,
    examples: Sequence[dict[str, Any]],
    output_dir: str | os.PathLike[str],
    *,
    epochs: float,
    learning_rate: float,
    batch_size: int,
    max_length: int,
    seed: int,
    **options: Any,
) -> Any:
    """Train on the seed set; save safetensors + tokenizer into ``output_dir``; return the model.

    ``options`` go to :func:`build_sft_trainer` (gradient_accumulation_steps, warmup_ratio,
    progress, padding_free, compact_lm_head). Trainer scratch files go to
    ``output_dir/trainer``, removed after saving.
    """
    import shutil

    output_dir = Path(output_dir)
    scratch = output_dir / "trainer"
    trainer = build_sft_trainer(
        model,
        tokenizer,
        examples,
        scratch,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        **options,
    )
    trainer.train()
    trained = trainer.model
    trained.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    shutil.rmtree(scratch, ignore_errors=True)
    trained.eval()
    return trained
