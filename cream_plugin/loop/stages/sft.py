"""M1: supervised fine-tuning of M0 on the seed conversations (TRL SFTTrainer, DDP)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from cream_plugin.config import RunConfig
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec


def pick_examples(
    examples: list[dict[str, Any]], cap: int | None, seed: int
) -> list[dict[str, Any]]:
    """At most ``cap`` seed examples, drawn by seed, in file order."""
    if not cap:
        return examples
    rng = np.random.default_rng(seed)
    keep = sorted(rng.permutation(len(examples))[:cap].tolist())
    return [examples[i] for i in keep]


def sft_examples(config: RunConfig) -> list[dict[str, Any]]:
    """The seed conversations SFT trains M1 on (``data.sft_examples`` of them, drawn by
    ``seed``), rows ``{id, messages}``: also the prompts and human responses of spin."""
    from cream_plugin.data import load_rows

    rows = load_rows("seed_sft", "train", config.data.data_dir)
    return pick_examples(rows, config.data.sft_examples, config.seed)


def whole_batches(trainer: Any, global_batch: int) -> None:
    """Train on whole global batches only (drop the last partial one), as long as there is
    one whole batch. Under DDP accelerate pads a short last batch with repeated examples, so a
    partial batch would make K processes train on other data than one process."""
    trainer.args.dataloader_drop_last = len(trainer.train_dataset) >= global_batch


def save_checkpoint(model: Any, tokenizer: Any, state_dict: dict[str, Any] | None = None) -> Any:
    """A folder writer for a trained model and its tokenizer (safetensors). ``state_dict``: the
    full weights gathered from a sharded model (FSDP, ZeRO-3), else the model's own."""

    def save_into(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(folder)

    return save_into


class SFTStage(StageSpec):
    step = "sft"
    kind = "folder"
    parallel = Parallel.DDP
    settings = (
        "model",
        "data.sft_examples",
        "training.sft_epochs",
        "training.sft_learning_rate",
        "training.sft_batch_size",
        "training.max_length",
        "seed",
    )

    def __init__(self) -> None:
        super().__init__("M1", method="sft", iteration=1)

    def models(self) -> tuple[str, ...]:
        return ("M0",)

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        from cream_plugin.loop.identity import data_digest

        return {
            "base": ctx.model_digest("M0"),
            "data": data_digest([("seed_sft", "train")], ctx.config.data.data_dir),
        }

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.trainers.cream_utils import NonFiniteGuard
        from cream_plugin.trainers.launch import check_engine, gathered_state_dict, saveable_model
        from cream_plugin.trainers.sft import build_sft_trainer
        from cream_plugin.trainers.tracking import track, tracking_kwargs

        cfg = ctx.config
        tr = cfg.training
        examples = sft_examples(cfg)
        scratch = ctx.scratch_dir(self.name)
        trainer = build_sft_trainer(
            ctx.load("M0"),
            ctx.tokenizer,
            examples,
            scratch,
            epochs=tr.sft_epochs,
            learning_rate=tr.sft_learning_rate,
            batch_size=ctx.per_device(tr.sft_batch_size, "training.sft_batch_size"),
            max_length=tr.max_length,
            seed=cfg.seed,
            progress=ctx.dist.is_main,
            padding_free=tr.padding_free,
            compact_lm_head=tr.compact_lm_head,
            extra_args=tracking_kwargs(tr.report_to, tr.run_name, stage=self.name,
                                       run_dir=ctx.run_dir),
        )
        whole_batches(trainer, tr.sft_batch_size)
        NonFiniteGuard.attach(trainer, stage=f"{self.name} (sft)")
        check_engine(trainer.accelerator, self.name)
        with track(trainer, stage=self.name, run_dir=ctx.run_dir, run_name=tr.run_name):
            trainer.train()
        state = gathered_state_dict(trainer)  # every process: a collective under FSDP/ZeRO-3
        trained = saveable_model(trainer).eval()
        shutil.rmtree(scratch, ignore_errors=True)
        ctx.release()
        return Output(
            save=save_checkpoint(trained, ctx.tokenizer, state),
            manifest={"examples": len(examples)},
        )
