"""Preference training of M_t on the iteration's pairs -> M_{t+1} (a registered TRL trainer,
DDP, FSDP or ZeRO-3 across processes as launched; only the main process saves)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cream_plugin.config import RunConfig, TrainingConfig
from cream_plugin.loop.artifacts import atomic_write_text
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.stage import Output, Parallel, StageSpec
from cream_plugin.loop.stages.sft import save_checkpoint, whole_batches
from cream_plugin.plugins.interfaces import CONSISTENCY_COLUMN, PAIR_TEXT_COLUMNS, REF_COLUMNS

log = logging.getLogger("cream.train")

PAIR_COLUMNS = (*PAIR_TEXT_COLUMNS, CONSISTENCY_COLUMN)


def pairs_dataset(pairs: list[dict[str, Any]]) -> Any:
    """The pairs as a ``datasets.Dataset`` with the columns the CREAM/DPO trainers read."""
    from datasets import Dataset

    columns = list(PAIR_COLUMNS)
    if pairs and all(c in pairs[0] for c in REF_COLUMNS):
        columns += REF_COLUMNS
    return Dataset.from_list([{c: p[c] for c in columns} for p in pairs])


def trainer_values(config: RunConfig, *, output_dir: str, per_device_batch: int, mode: str,
                   stage: str, run_dir: Path, use_cpu: bool, progress: bool) -> dict[str, Any]:
    """Every value the pipeline gives a trainer's Config: the run's training settings under
    TRL's names, the trainer's own extra fields (``training.<field>``) and the fixed ones."""
    from cream_plugin.trainers.tracking import tracking_kwargs

    tr = config.training
    return dict(
        output_dir=output_dir,
        beta=tr.beta,
        learning_rate=tr.learning_rate,
        num_train_epochs=tr.num_epochs,
        warmup_ratio=tr.warmup_ratio,
        per_device_train_batch_size=per_device_batch,
        gradient_accumulation_steps=tr.gradient_accumulation_steps,
        max_length=tr.max_length,
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=not progress,
        use_cpu=use_cpu,
        bf16=False,
        consistency_mode=mode,
        padding_free=tr.padding_free,
        compact_lm_head=tr.compact_lm_head,
        **tracking_kwargs(tr.report_to, tr.run_name, stage=stage, run_dir=run_dir),
        **tr.trainer_args,
    )


def trainer_arguments(config_cls: type, values: dict[str, Any]) -> Any:
    """The trainer's own Config built from the values it has fields for."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    if "compact_lm_head" not in fields:  # packed rows are CREAMTrainer's; TRL 1.16's DPO
        fields.discard("padding_free")  # trainer would warn that it ignores the flag
    return config_cls(**numbers_as_floats(config_cls,
                                          {k: v for k, v in values.items() if k in fields}))


def numbers_as_floats(config_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each numeric string of a float field read as a number: YAML 1.1 reads
    ``2e-1`` (no dot) as a string, which a Config's float field refuses ("must be real number,
    not str"); the run's own float settings accept it the same way."""
    import typing

    from cream_plugin.config_checks import parse_number

    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # a Config whose annotations cannot be resolved: leave its values alone
        return values
    out = dict(values)
    for key, value in values.items():
        hint = hints.get(key)
        options = set(typing.get_args(hint)) or {hint}
        if float in options and options <= {float, int, type(None)} and isinstance(value, str):
            out[key] = parse_number(value, f"training.{key}")  # ConfigError naming the key
    return out


TRAINING_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainingConfig))


def overridden_training(config: RunConfig, overrides: Mapping[str, Any],
                        method: str) -> RunConfig:
    """``config`` with a method's training overrides applied (checked like the config's own
    ``training`` section; a key that is no setting becomes a trainer argument, as there)."""
    if not overrides:
        return config
    from cream_plugin.config import build_section

    data = config.to_dict()["training"]
    data["trainer_args"].update({k: v for k, v in overrides.items() if k not in TRAINING_FIELDS})
    data.update({k: v for k, v in overrides.items() if k in TRAINING_FIELDS})
    section = build_section(TrainingConfig, data, f"training.method_overrides.{method}")
    return dataclasses.replace(config, training=section)


class TrainStage(StageSpec):
    step = "train"
    kind = "folder"
    parallel = Parallel.DDP

    def __init__(self, method: str, iteration: int, base_key: str, new_key: str, pairs: StageSpec,
                 trainer: str, mode: str, extra_settings: tuple[str, ...] = (),
                 overrides: Mapping[str, Any] | None = None) -> None:
        """``overrides``: training settings this method trains with instead of the run's
        (:meth:`cream_plugin.plugins.methods.Method.training_settings`)."""
        super().__init__(new_key, method, iteration)
        self.base_key = base_key
        self.pairs = pairs
        self.trainer = trainer
        self.mode = mode
        self.settings = ("training", "consistency", "seed", *extra_settings)
        self.overrides = dict(overrides or {})

    def models(self) -> tuple[str, ...]:
        return (self.base_key,)

    def upstream(self) -> dict[str, Any]:
        return {"pairs": self.pairs}

    def inputs(self, ctx: RunContext) -> dict[str, str]:
        found = {**super().inputs(ctx), "base": ctx.model_digest(self.base_key)}
        if self.overrides:  # absent: the identity it always had
            training = overridden_training(ctx.config, self.overrides, self.method).training
            applied = {k: getattr(training, k) if k in TRAINING_FIELDS
                       else training.trainer_args[k] for k in sorted(self.overrides)}
            found["training_overrides"] = json.dumps(applied, sort_keys=True, default=str)
        return found

    def compute(self, ctx: RunContext) -> Output:
        from cream_plugin.plugins.registry import get_trainer
        from cream_plugin.trainers.cream_utils import NonFiniteGuard
        from cream_plugin.trainers.launch import check_engine, gathered_state_dict, saveable_model
        from cream_plugin.trainers.tracking import track

        cfg = overridden_training(ctx.config, self.overrides, self.method)
        tr = cfg.training
        pairs = ctx.result(self.pairs).read_rows()
        model = ctx.load(self.base_key)
        scratch = ctx.scratch_dir(self.name)
        history: list[dict[str, Any]] = []
        state: dict[str, Any] | None = None
        if not pairs:
            log.warning("%s: no preference pairs; %s = %s", self.name, self.name, self.base_key)
        else:
            trainer_cls, config_cls = get_trainer(self.trainer)
            values = trainer_values(
                cfg,
                output_dir=str(scratch),
                per_device_batch=ctx.per_device(tr.batch_size, "training.batch_size"),
                mode=self.mode,
                stage=self.name,
                run_dir=ctx.run_dir,
                use_cpu=str(model.device) == "cpu",
                progress=ctx.dist.is_main,
            )
            dataset = pairs_dataset(pairs)
            ref_model = None
            if "ref_chosen_logps" not in dataset.column_names:
                import copy

                ref_model = copy.deepcopy(model).eval()
            trainer = trainer_cls(
                model=model,
                ref_model=ref_model,
                args=trainer_arguments(config_cls, values),
                train_dataset=dataset,
                processing_class=ctx.tokenizer,
            )
            whole_batches(trainer, tr.batch_size)
            # Every trainer (plugins' too) stops at the first non-finite loss or gradient norm.
            NonFiniteGuard.attach(trainer, stage=f"{self.name} ({self.method})")
            check_engine(trainer.accelerator, self.name)
            with track(trainer, stage=self.name, run_dir=ctx.run_dir, run_name=tr.run_name):
                trainer.train()
            state = gathered_state_dict(trainer)  # every process: a collective (FSDP/ZeRO-3)
            model = saveable_model(trainer)
            history = trainer.state.log_history
        shutil.rmtree(scratch, ignore_errors=True)
        ctx.release()
        log_path = ctx.run_dir / f"{self.name}.train_log.json"

        def write_log() -> None:
            if pairs:  # beside the checkpoint, so it survives pruning of the weights
                atomic_write_text(log_path, json.dumps(history, indent=1))

        return Output(
            save=save_checkpoint(model, ctx.tokenizer, state),
            manifest={"pairs": len(pairs), "mode": self.mode},
            after_write=write_log,
        )
