"""Everything a run needs, checked before it touches the disk: methods and components exist,
the data files exist, the device exists. A run that would fail later fails here, in a second,
with a message naming what is missing."""

from __future__ import annotations

from pathlib import Path

from cream_plugin.config import RunConfig
from cream_plugin.errors import ConfigError, DataError
from cream_plugin.methods import Method, resolve_methods

TASK_DATA: dict[str, tuple[tuple[str, str], ...]] = {
    "arc_easy": (("arc_easy", "test"),),
    "arc_challenge": (("arc_challenge", "test"),),
    "openbookqa": (("openbookqa", "test"),),
    "siqa": (("social_iqa", "validation"),),
    "gsm8k": (("gsm8k", "test"), ("gsm8k", "train")),
}
"""The local files each cream task family reads (GSM8K's few-shot examples come from train)."""


def task_files(tasks: list[str]) -> set[tuple[str, str]]:
    """Local data files the configured cream tasks read (third-party tasks: none known)."""
    needed: set[tuple[str, str]] = set()
    for task in tasks:
        if task in ("cream_benchmarks", "cream_cot_benchmarks"):
            for files in TASK_DATA.values():
                needed.update(files)
            continue
        for family, files in TASK_DATA.items():
            if task.startswith("cream_") and task.endswith(family):
                needed.update(files)
    return needed


def check_components(config: RunConfig, methods: dict[str, Method]) -> None:
    """Fail before any work when a configured component name is unknown."""
    from cream_plugin.registry import get_component

    needed = [
        ("sampler", config.sampling.backend),
        ("evaluator", config.evaluation.evaluator),
        ("consistency_metric", config.consistency.metric),
    ]
    for method in methods.values():
        rewarder = method.rewarder_name(config)
        if rewarder is None:
            continue
        needed.append(("trainer", method.trainer_name(config)))
        needed.append(("rewarder", rewarder))
    for kind, name in needed:
        try:
            get_component(kind, name)
        except KeyError as exc:
            raise ConfigError(str(exc)) from None


def check_trainer_args(config: RunConfig, methods: dict[str, Method]) -> None:
    """Every ``training.<field>`` beyond the run's own keys is a field of the Config class of a
    trainer the run uses, and each such Config accepts the resulting values (its own bounds)."""
    import dataclasses
    import math
    import tempfile

    from cream_plugin.registry import get_trainer
    from cream_plugin.stages.train import trainer_arguments, trainer_values

    extra = dict(config.training.trainer_args)
    for key, value in extra.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"training.{key}: expected a finite number, got {value}")
    used = {m.trainer_name(config) for m in methods.values() if m.reward is not None}
    if not used:
        return
    classes = {name: get_trainer(name)[1] for name in sorted(used)}
    fields = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in classes.items()}
    for key in extra:
        if not any(key in names for names in fields.values()):
            shown = ", ".join(f"{n} ({c.__name__})" for n, c in classes.items())
            raise ConfigError(
                f"training.{key}: not a run setting and not a field of the Config of any "
                f"trainer this run uses: {shown}"
            )
    scratch = str(Path(tempfile.gettempdir()) / "cream-preflight")
    runs = {(m.trainer_name(config), config.consistency.mode if m.regularised else "none")
            for m in methods.values() if m.reward is not None}
    for name, mode in sorted(runs):
        cls = classes[name]
        values = trainer_values(config, output_dir=scratch, per_device_batch=1, mode=mode,
                                stage="preflight", run_dir=Path(scratch), use_cpu=True,
                                progress=False)
        try:
            trainer_arguments(cls, values)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"training: the {name!r} trainer's {cls.__name__} refuses these settings: {exc}"
            ) from None


def check_data(config: RunConfig) -> None:
    """Every data file the run will read exists (local folder), before SFT spends minutes."""
    from cream_plugin.data import local_path, resolve_data_dir
    from cream_plugin.prompts import CONVERTERS

    unknown = [s for s in config.data.prompt_sources if s not in CONVERTERS]
    if unknown:
        raise ConfigError(
            f"data.prompt_sources: unknown source {unknown[0]!r}; known: {', '.join(CONVERTERS)}"
        )
    folder = resolve_data_dir(config.data.data_dir)
    if folder is None:
        return  # the Hub: checked when loaded
    needed = {(s, "train") for s in config.data.prompt_sources} | {("seed_sft", "train")}
    needed |= task_files(config.evaluation.tasks)
    missing = sorted(str(local_path(n, s, folder)) for n, s in needed
                     if not local_path(n, s, folder).is_file())
    if missing:
        raise DataError(
            f"data folder {folder} lacks {', '.join(missing)}; the run needs them "
            "(prompt sources, seed SFT set and evaluation splits)"
        )


def check_device(config: RunConfig) -> None:
    device = config.model.device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"model.device: {device!r} asked for, but no CUDA device is visible")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"model.device: {device!r}, but only {torch.cuda.device_count()} CUDA device(s)"
            )


def check_placement(config: RunConfig) -> None:
    """A model too large for one device must not be loaded whole by any stage (see
    :func:`cream_plugin.placement.check_sharded_run`)."""
    import os

    from cream_plugin.launch import requested_engine
    from cream_plugin.placement import check_sharded_run

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1 or config.model.scoring_placement != "auto":
        return
    check_sharded_run(config.model, world, sampling_backend=config.sampling.backend,
                      evaluator=config.evaluation.evaluator,
                      engine=requested_engine(dict(os.environ)))


def preflight(config: RunConfig) -> dict[str, Method]:
    """All checks; returns the configured methods."""
    from cream_plugin.tracking import normalize_report_to

    methods = resolve_methods(list(config.methods))
    check_components(config, methods)
    normalize_report_to(config.training.report_to)
    check_trainer_args(config, methods)
    check_data(config)
    check_device(config)
    check_placement(config)
    return methods
