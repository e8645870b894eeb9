"""Everything a run needs, checked before it touches the disk: methods and components exist,
the data files exist and hold rows, the model and its tokenizer load, the seeds draw a prompt
pool whose prompts fit the model's context, the device exists. A run that would fail later
fails here, in seconds, with a message naming what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cream_plugin.config import RunConfig
from cream_plugin.errors import ConfigError, DataError
from cream_plugin.plugins.methods import Method, resolve_methods

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
    from cream_plugin.plugins.registry import get_component

    needed = [
        ("sampler", config.sampling.backend),
        ("evaluator", config.evaluation.evaluator),
        ("consistency_metric", config.consistency.metric),
    ]
    for method in methods.values():
        if not method.trains:
            continue
        needed.append(("trainer", method.trainer_name(config)))
        rewarder = method.rewarder_name(config)
        if rewarder is not None:
            needed.append(("rewarder", rewarder))
    for kind, name in needed:
        try:
            get_component(kind, name)
        except KeyError as exc:
            raise ConfigError(str(exc)) from None


def check_method_options(config: RunConfig) -> None:
    """Every ``method_options`` entry names a registered method and only options it has."""
    from cream_plugin.plugins.methods import get_method, method_settings

    for name in config.method_options:
        try:
            method = get_method(name)
        except ConfigError as exc:
            raise ConfigError(f"method_options.{name}: {exc}") from None
        method_settings(config, method)


def check_trainer_args(config: RunConfig, methods: dict[str, Method]) -> None:
    """Every ``training.<field>`` beyond the run's own keys is a field of the Config class of a
    trainer the run uses, and each such Config accepts the resulting values (its own bounds)."""
    import dataclasses
    import math
    import tempfile

    from cream_plugin.loop.stages.train import trainer_arguments, trainer_values
    from cream_plugin.plugins.registry import get_trainer

    extra = dict(config.training.trainer_args)
    for key, value in extra.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"training.{key}: expected a finite number, got {value}")
    used = {m.trainer_name(config) for m in methods.values() if m.trains}
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
            for m in methods.values() if m.trains}
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
    from cream_plugin.loop.prompt_pool import CONVERTERS

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


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
"""Where a model config states its context length (the first one present is used)."""
MAX_BYTES_PER_TOKEN = 64
"""No tokenizer packs more bytes into one token: a longer prompt is refused untokenised."""


def check_model(config: RunConfig) -> tuple[Any, int | None]:
    """``model.name`` resolves and its tokenizer and config load (cheap, no weights); returns the
    tokenizer and the model's context length (None when its config does not state one)."""
    from transformers import AutoConfig

    from cream_plugin.errors import ModelLoadError
    from cream_plugin.forward.models import load_tokenizer, resolve_model_path

    m = config.model
    if not m.name.strip():
        raise ConfigError("model.name: empty; name a Hub id, a local folder or a .gguf file")
    path, gguf = resolve_model_path(m.name, m.gguf_file)
    tokenizer = load_tokenizer(m.name, gguf_file=m.gguf_file,
                               trust_remote_code=m.trust_remote_code)
    try:
        model_config = AutoConfig.from_pretrained(path, gguf_file=gguf,
                                                  trust_remote_code=m.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model.name: could not read the config of {m.name!r}: {exc}"
                             ) from None
    text_config = getattr(model_config, "get_text_config", lambda: model_config)()
    for key in CONTEXT_KEYS:
        value = getattr(text_config, key, None)
        if isinstance(value, int) and value > 0:
            return tokenizer, value
    return tokenizer, None


def check_prompts(config: RunConfig, tokenizer: Any, context: int | None) -> None:
    """The seed SFT set holds rows, and the run's prompt pool (drawn with its seed, as the
    prompts stage will) has enough prompts, each short enough that the prompt and
    ``sampling.max_new_tokens`` fit the model's context (a prompt of megabytes would otherwise
    sample for hours)."""
    from cream_plugin.data import load_rows, local_path, resolve_data_dir
    from cream_plugin.forward.sampling import render_prompt
    from cream_plugin.loop.prompt_pool import build_prompt_pool

    folder = resolve_data_dir(config.data.data_dir)
    if folder is None:
        return  # the Hub: checked when loaded
    if not load_rows("seed_sft", "train", folder):
        raise DataError(f"{local_path('seed_sft', 'train', folder)}: no rows; the seed SFT set "
                        "needs at least one example")
    d = config.data
    pool = build_prompt_pool(d.prompt_sources, folder, d.prompts_per_iteration,
                             config.iterations, config.seed)
    if context is None:
        return
    room = context - config.sampling.max_new_tokens
    if room < 1:
        raise ConfigError(f"sampling.max_new_tokens: {config.sampling.max_new_tokens} tokens "
                          f"leave no room for a prompt in the model's context of {context}")
    for chunk in pool:
        for item in chunk:
            text = render_prompt(tokenizer, item["prompt"])
            size = len(text.encode("utf-8"))
            tokens = (size if size > MAX_BYTES_PER_TOKEN * context
                      else len(tokenizer(text, add_special_tokens=False)["input_ids"]))
            if tokens > room:
                measured = f"{size} bytes" if tokens == size else f"{tokens} tokens"
                raise DataError(
                    f"prompt {item['prompt_id']} ({item['source']}/train): {measured}, more than "
                    f"the {room} tokens the model's context of {context} leaves beside "
                    f"sampling.max_new_tokens={config.sampling.max_new_tokens}; shorten or "
                    "remove it from the data, or lower sampling.max_new_tokens"
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
    :func:`cream_plugin.forward.placement.check_sharded_run`)."""
    import os

    from cream_plugin.forward.placement import check_sharded_run
    from cream_plugin.trainers.launch import requested_engine

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1 or config.model.scoring_placement != "auto":
        return
    check_sharded_run(config.model, world, sampling_backend=config.sampling.backend,
                      evaluator=config.evaluation.evaluator,
                      engine=requested_engine(dict(os.environ)))


def preflight(config: RunConfig) -> dict[str, Method]:
    """All checks; returns the configured methods."""
    from cream_plugin.trainers.tracking import normalize_report_to

    methods = resolve_methods(list(config.methods))
    check_components(config, methods)
    check_method_options(config)
    normalize_report_to(config.training.report_to)
    check_trainer_args(config, methods)
    check_data(config)
    check_device(config)
    tokenizer, context = check_model(config)
    check_prompts(config, tokenizer, context)
    check_placement(config)
    return methods
