"""``cream train``: preference-train a model on a pairs file written by ``cream pairs``."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

from cream_plugin.commands import add_output_option
from cream_plugin.errors import ConfigError, DataError

HELP = "Train a model on a pairs file (CREAM or plain DPO) and save it to a folder."
# The trainer-config fields recorded in the checkpoint's model card.
TRAINING_SETTINGS = (
    "beta", "learning_rate", "num_train_epochs", "warmup_ratio", "per_device_train_batch_size",
    "gradient_accumulation_steps", "max_length", "consistency_mode", "seed",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pairs_file", metavar="PAIRS_FILE", help="JSON-lines preference pairs")
    parser.add_argument("--model", required=True, help="model folder, Hub id or built-in name")
    add_output_option(parser, "folder the trained model is saved to", required=True)
    parser.add_argument("--trainer", default="cream", help="registered trainer (cream, dpo, ...)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a field of the trainer's config, e.g. --set beta=0.1 --set consistency_mode=average",
    )
    parser.add_argument(
        "--report-to", default="none",
        help="trackers: none, or comma-separated tensorboard,trackio,wandb,... (logs in OUTPUT/tb)",
    )
    parser.add_argument("--run-name", help="tracker run name (default: the output folder's name)")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["beta=0.1", ...]`` -> ``{"beta": 0.1}``: the run config's own override rules."""
    from cream_plugin.config import parse_key_values

    return parse_key_values(items, "--set")


def _is_float_field(f: dataclasses.Field[Any]) -> bool:
    text = f.type if isinstance(f.type, str) else repr(f.type)
    return "float" in text or isinstance(f.default, float)


def coerce_overrides(config_cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """Numbers for float fields (YAML 1.1 reads ``1e-6`` as a string); NaN/inf refused."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    out = dict(overrides)
    for key, value in overrides.items():
        if key not in fields or not _is_float_field(fields[key]):
            continue
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                if "str" not in repr(fields[key].type):
                    raise ConfigError(f"--set {key}: expected a number, got {value!r}") from None
                continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--set {key}: expected a finite number, got {value!r}")
        out[key] = value
    return out


def build_args(config_cls: type, output_dir: str, overrides: dict[str, Any]) -> Any:
    """The trainer's config with CPU-friendly defaults, ``output_dir`` and the overrides.

    Without a CUDA device, ``use_cpu`` is on and bf16 off unless ``--set`` says otherwise (TRL
    defaults to bf16, which transformers refuses on a CPU-only machine).
    """
    import torch

    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"--set: {config_cls.__name__} has no field(s) {', '.join(unknown)}")
    overrides = coerce_overrides(config_cls, overrides)
    kwargs: dict[str, Any] = {"report_to": "none", "save_strategy": "no", "logging_steps": 10}
    if not torch.cuda.is_available():
        kwargs.update({k: v for k, v in (("use_cpu", True), ("bf16", False)) if k in known})
    kwargs.update(overrides)
    try:
        return config_cls(output_dir=output_dir, **kwargs)
    except (TypeError, ValueError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        source = f" with {given}" if given else ""
        raise ConfigError(f"trainer config {config_cls.__name__}{source}: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    from datasets import Dataset

    from cream_plugin.data import ensure_writable_folder, read_jsonl
    from cream_plugin.forward.models import load_model, load_tokenizer
    from cream_plugin.plugins.interfaces import REF_COLUMNS
    from cream_plugin.plugins.registry import get_trainer
    from cream_plugin.ranking.pairs import validate_pair_rows
    from cream_plugin.trainers.cream_utils import NonFiniteGuard

    try:
        trainer_cls, config_cls = get_trainer(args.trainer)
    except KeyError as exc:
        raise ConfigError(str(exc)) from None
    from cream_plugin.cards import standalone_lineage, write_model_card
    from cream_plugin.trainers.tracking import track, tracking_kwargs

    tracking = tracking_kwargs(args.report_to, args.run_name, stage="train", run_dir=args.output)
    overrides = parse_overrides(args.set)
    config = build_args(config_cls, args.output, {**tracking, **overrides})
    rows = read_jsonl(args.pairs_file)
    validate_pair_rows(rows, args.pairs_file)
    ensure_writable_folder(args.output, "--output")
    try:
        dataset = Dataset.from_list(rows)
    except Exception as exc:  # pyarrow's many type errors: name the file
        raise DataError(f"{args.pairs_file}: rows do not form one table ({exc})") from None
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, device="cpu" if config.use_cpu else "auto").train()
    kwargs: dict[str, Any] = {}
    if args.trainer == "dpo":
        # Plain TRL would reload the reference from the model's path: give it the same weights.
        dataset = dataset.remove_columns([c for c in REF_COLUMNS if c in dataset.column_names])
        kwargs["ref_model"] = copy.deepcopy(model).eval().requires_grad_(False)
    trainer = trainer_cls(model=model, args=config, train_dataset=dataset,
                          processing_class=tokenizer, **kwargs)
    NonFiniteGuard.attach(trainer, stage=f"cream train {args.pairs_file}")
    with track(trainer, stage="train", run_dir=args.output, run_name=args.run_name):
        trainer.train()  # a NaN/inf loss or gradient raises here, before anything is saved
    try:
        trainer.save_model(args.output)
        tokenizer.save_pretrained(args.output)
    except OSError as exc:
        raise DataError(f"--output {args.output}: cannot save the model "
                        f"({exc.strerror or exc})") from None
    settings = {k: getattr(config, k) for k in TRAINING_SETTINGS if hasattr(config, k)}
    lineage = standalone_lineage(
        args.pairs_file, args.model, method=args.trainer, checkpoint=Path(args.output).name,
        training={**settings, **overrides},
    )
    write_model_card(args.output, lineage)
    print(Path(args.output))
    return 0
