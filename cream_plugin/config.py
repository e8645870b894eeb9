"""The run configuration: typed sections, loaded from YAML plus ``key.path=value`` overrides.

Everything is checked before any work starts: an unknown key, a wrong type or an out-of-range
value raises :class:`ConfigError` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cream_plugin.config_checks import (
    check_range,
    coerce,
    deep_merge,
    error_text,
    load_yaml,
    merge_overrides,
    parse_key_values,
    parse_override,
    type_name,
)
from cream_plugin.errors import ConfigError

__all__ = [
    "RunConfig",
    "explain",
    "load_config",
    "merge_overrides",
    "parse_key_values",
    "parse_override",
]

DEVICE_PATTERN = r"auto|cpu|mps|cuda(:[0-9]+)?"
"""Device strings a config (and ``--device``) accepts: auto, cpu, mps, cuda, cuda:N."""


def check_device(value: str, key: str = "model.device") -> str:
    """``value`` when it is a device string torch understands here; else :class:`ConfigError`."""
    if not isinstance(value, str) or not re.fullmatch(DEVICE_PATTERN, value):
        raise ConfigError(f"{key}: {value!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    return value


def _f(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[Any, ...] | None = None,
    lo_open: bool = False,
    pattern: str | None = None,
    doc: str = "",
) -> Any:
    meta = {"lo": lo, "hi": hi, "choices": choices, "lo_open": lo_open, "pattern": pattern,
            "doc": doc}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    """Which model M0 is: a Hub id, a local folder, a .gguf file or a built-in name."""

    name: str = _f("smollm2-135m-instruct", doc="Hub id, local folder, .gguf path or built-in")
    gguf_file: str | None = _f(None, doc="GGUF file name inside `name` when it is a folder")
    dtype: str = _f(
        "float32",
        choices=("float32", "bfloat16", "float16", "auto"),
        doc="weights dtype for every model of the run",
    )
    device: str = _f("auto", pattern=DEVICE_PATTERN, doc="auto, cpu, cuda, cuda:N, mps")
    trust_remote_code: bool = _f(False, doc="allow a Hub model's own code (off unless set)")
    scoring_placement: str = _f(
        "auto",
        choices=("auto", "replica", "sharded"),
        doc="log-prob scoring across processes: a whole model per process, rows split "
        "(replica), FSDP2-sharded with every process stepping through every batch (sharded), or "
        "replica unless the weights exceed 60% of one GPU (auto; cream_plugin.forward.placement)",
    )
    vllm_options: dict[str, Any] = _f(
        {},
        doc="extra vllm.LLM arguments for every engine of the run, e.g. "
        "{tensor_parallel_size: 8, gpu_memory_utilization: 0.85} for a model larger than one GPU",
    )


@dataclass
class DataConfig:
    """Where benchmark and seed data come from and how the prompt pool is drawn."""

    data_dir: str | None = _f(
        None, doc="local folder in shared/data layout; else CREAM_DATA_DIR, else the Hub"
    )
    prompt_sources: list[str] = _f(
        ["seed_sft", "arc_easy", "arc_challenge", "openbookqa", "gsm8k"],
        doc="data sets whose train prompts form the unlabeled prompt pool",
    )
    prompts_per_iteration: int = _f(
        64, lo=1, doc="prompts sampled per iteration (disjoint across iterations)"
    )
    sft_examples: int | None = _f(None, lo=1, doc="cap on seed SFT examples (None = all)")


@dataclass
class SamplingConfig:
    """Response generation for self-rewarding (paper: N=5, T=0.8, top_p=0.95)."""

    backend: str = _f("hf", doc="registered sampler: hf (cream's decode loop) or vllm")
    num_responses: int = _f(5, lo=2, hi=64, doc="N responses per prompt (paper: 5)")
    temperature: float = _f(0.8, lo=0.0, hi=5.0, lo_open=True, doc="sampling temperature")
    top_p: float = _f(0.95, lo=0.0, hi=1.0, lo_open=True, doc="nucleus sampling mass")
    max_new_tokens: int = _f(256, lo=1, doc="cap on each response's tokens")
    batch_size: int = _f(16, lo=1, doc="prompts x responses decoded together")


@dataclass
class RewarderConfig:
    """Which rewarder ranks the responses, with its own options."""

    name: str = _f("implicit", doc="rewarder of the cream and cream-no-rc methods")
    oracle: str = _f("answer-key", doc="rewarder of the oracle method")
    judge: str = _f("judge", doc="rewarder of the srlm method")
    batch_size: int = _f(16, lo=1, doc="sequences per forward when scoring log-probs or judging")
    options: dict[str, Any] = _f(
        {}, doc="per rewarder name, keyword arguments for its factory: {judge: {samples: 3}}"
    )


@dataclass
class ConsistencyConfig:
    """How CREAM weighs each preference label (paper §3)."""

    metric: str = _f(
        "kendall", doc="registered consistency metric for C: kendall, spearman or toporder"
    )
    mode: str = _f(
        "dynamic",
        choices=("dynamic", "average", "none"),
        doc="C per pair (dynamic), the data set's mean C (average), or C = 1 (none = DPO)",
    )
    measure_all: bool = _f(
        False,
        doc="also measure C for unregularised methods whose reward comes from the model (SRLM: "
        "the judge runs again as M_{t-1}); reported only, never used in training",
    )
    after_last: bool = _f(False, doc="also C of M_(T+1) vs M_T (the paper's M3 vs M2) on one "
                          "more chunk of prompts, with M_(T+1)'s pool accuracy; no training")


@dataclass
class TrainingConfig:
    """SFT and preference training (paper: beta 0.1, lr 1e-6, 1 epoch, warmup 0.1)."""

    trainer: str = _f("cream", doc="registered trainer of methods that name none")
    beta: float = _f(0.1, lo=0.0, lo_open=True, doc="DPO beta (paper: 0.1)")
    learning_rate: float = _f(
        1e-6, lo=0.0, lo_open=True, doc="preference-training learning rate (paper: 1e-6)"
    )
    num_epochs: float = _f(1.0, lo=0.0, lo_open=True, doc="epochs over each iteration's pairs")
    warmup_ratio: float = _f(0.1, lo=0.0, hi=1.0, doc="share of steps with linear warm-up")
    batch_size: int = _f(4, lo=1, doc="global preference batch (split across processes)")
    gradient_accumulation_steps: int = _f(1, lo=1, doc="micro-batches per optimiser step")
    max_length: int = _f(1024, lo=8, doc="prompt + response tokens kept (SFT, DPO, scoring)")
    sft_epochs: float = _f(3.0, lo=0.0, doc="SFT epochs on the seed set (paper: 3)")
    sft_learning_rate: float = _f(2e-5, lo=0.0, lo_open=True, doc="SFT learning rate")
    sft_batch_size: int = _f(8, lo=1, doc="global SFT batch")
    padding_free: bool = _f(
        True,
        doc="SFT and preference training pack each batch's sequences into unpadded rows "
        "(cream_plugin.forward.packing): the same losses within float rounding, no padding "
        "computed; "
        "the first batch is checked against the padded forward",
    )
    compact_lm_head: bool = _f(
        True,
        doc="SFT and preference training project only completion positions through the LM "
        "head (TRL does so on CUDA only): the same values, less work on CPU",
    )
    require_pairs: bool = _f(
        False,
        doc="stop the run with an error when an iteration's reward forms no preference pairs "
        "(by default such an iteration is logged and flagged in the report, and M_(t+1) is a "
        "copy of M_t)",
    )
    report_to: list[str] | str = _f(
        "none",
        doc="trackers for every trainer of the run: none, or a list of tensorboard, trackio, "
        "wandb, ... (one tracker run per stage, grouped by run_name; "
        "cream_plugin.trainers.tracking)",
    )
    run_name: str | None = _f(
        None, doc="name that groups the run's tracker runs; None = the run folder's name"
    )
    trainer_args: dict[str, Any] = _f(
        {},
        doc="any other field of the trainers' own Config classes (CREAMConfig, SCIRConfig, "
        "DPOConfig, a plugin's): write it in this section (training.consistency_weight=2 or "
        "training.weight_decay=0.01); checked against each trainer the run uses, before work",
    )
    method_overrides: dict[str, dict[str, Any]] = _f({}, doc="per method, training settings "
                                                     "it trains with ({cream: {beta: 0.2}}), "
                                                     "over the method's training_overrides")


@dataclass
class EvaluationConfig:
    """Which benchmarks score every iteration, and how many items."""

    evaluator: str = _f("lm-eval", doc="registered evaluator: lm-eval (in memory) or vllm")
    tasks: list[str] = _f(["cream_benchmarks"], doc="lm-eval tasks or groups (cream tasks-path)")
    limit: int | None = _f(None, lo=1, doc="items per task (None: all); the report states stderr")
    generation_limit: int | None = _f(
        None, lo=1, doc="items per generative task (gsm8k: ~9 s an item on a CPU); None = limit"
    )
    batch_size: int = _f(16, lo=1, doc="lm-eval batch size")
    num_fewshot: int | None = _f(None, lo=0, doc="few-shot examples (None: each task's own)")
    max_gen_toks: int | None = _f(
        None, lo=1, doc="cap on generated tokens in generative tasks (None: the task's own)"
    )
    decode_loop: bool = _f(
        True, doc="greedy generative tasks on cream's decode loop (same strings, rows stop early)"
    )


SEED_MAX = 2**32 - 1
"""The largest seed numpy and torch accept (a seed of 10**23 used to fail after the prompts)."""

UNHASHED = ("training.report_to", "training.require_pairs", "training.run_name",
            "training.padding_free", "training.compact_lm_head", "model.scoring_placement",
            "model.vllm_options", "consistency.after_last", "training.method_overrides")
"""Settings out of every stage's config hash: where a run reports or how fast it computes (the
same values within float rounding; ``require_pairs`` only makes an empty pairs stage an error);
``after_last`` only adds stages; each train stage hashes its own method's overrides."""

@dataclass
class RunConfig:
    """One run of the iterative loop: methods, iterations, seed and every stage's settings."""

    methods: list[str] = _f(
        ["cream"], doc="registered methods to run from one shared M1 (cream plugins lists them)"
    )
    iterations: int = _f(2, lo=1, hi=100, doc="self-rewarding iterations per method")
    seed: int = _f(42, lo=0, hi=SEED_MAX, doc="seeds the prompt pool, sampling, SFT and training")
    output_dir: str = _f("runs/cream", doc="the run folder (cream --output); must not be empty")
    keep_checkpoints: list[str | int] = _f(
        ["final"],
        doc="checkpoint folders kept after the run: final (each method's last model, always "
        "kept), all, M<k> (M1 = the SFT model; iteration t trains M_t into M_(t+1)), "
        "<method>/M<k>; an integer k (old spelling) means M<k>",
    )
    seeds: list[int] = _f(
        [],
        lo=0,
        hi=SEED_MAX,
        doc="run the whole config once per seed into <output_dir>/seed-<s>; the top report "
        "treats seeds as replicates: comparisons per seed, then a t-interval over seeds, with "
        "forest plots (empty: one run with `seed`)",
    )
    method_options: dict[str, Any] = _f(
        {},
        doc="per method name, its own options: {spin: {decoding: greedy}} (cream plugins "
        "--kind method lists each method's options and defaults; no stage hashes this key, a "
        "method's stages hash the options they read)",
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    rewarder: RewarderConfig = field(default_factory=RewarderConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_hash(self, *sections: str) -> str:
        """A stable hash of some sections, so a stage knows when its inputs changed."""
        data = self.to_dict()
        for dotted in UNHASHED:
            *parents, last = dotted.split(".")
            _dig(data, ".".join(parents)).pop(last, None)
        picked = {name: _dig(data, name) for name in sections}
        blob = json.dumps(picked, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def build_section(cls: type, data: Any, prefix: str) -> Any:
    """A config section (dataclass ``cls``) from a mapping, checked; errors name ``prefix``."""
    where = prefix or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(data) - set(fields))
    if unknown and cls is TrainingConfig:
        # Trainer Config fields: checked against the registered trainers in preflight.
        extra = dict(data.get("trainer_args") or {})
        extra.update({k: data[k] for k in unknown})
        data = {k: v for k, v in data.items() if k not in unknown}
        data["trainer_args"] = extra
        unknown = []
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown key {key!r}; known keys here: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build_section(tp, value, key)  # type: ignore[arg-type]
            continue
        value = coerce(value, tp, key)
        check_range(value, fields[name].metadata, key)
        kwargs[name] = value
    return cls(**kwargs)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Build a validated :class:`RunConfig` from a preset/base dict, a YAML file and overrides."""
    data: dict[str, Any] = deep_merge({}, base or {})
    if path is not None:
        path = Path(path)
        loaded = _read_yaml(path)
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        data = deep_merge(data, loaded)
    data = merge_overrides(data, overrides or [])
    try:
        return typing.cast(RunConfig, build_section(RunConfig, data, ""))
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"{path}: {exc}") from None
        raise


def _read_yaml(path: Path) -> Any:
    """The YAML document in ``path``; every way of failing is one ConfigError naming the file."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give the path of a YAML file")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        return load_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {error_text(exc)}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None


def explain(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(dotted key, type, default, doc) for every setting, in declaration order."""
    rows: list[tuple[str, str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            rows += explain(tp, f"{key}.")  # type: ignore[arg-type]
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        meta = f.metadata
        bounds = []
        if meta.get("choices"):
            bounds.append("one of " + ", ".join(map(str, meta["choices"])))
        if meta.get("lo") is not None:
            bounds.append(f"{'>' if meta.get('lo_open') else '>='} {meta['lo']}")
        if meta.get("hi") is not None:
            bounds.append(f"<= {meta['hi']}")
        doc = meta.get("doc", "") + (f" [{'; '.join(bounds)}]" if bounds else "")
        rows.append((key, type_name(tp), default, doc))
    return rows
