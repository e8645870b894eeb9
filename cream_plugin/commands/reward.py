"""``cream reward``: score a samples file with a rewarder and write a rewards file.

Samples rows (jsonl or parquet): ``{prompt_id, prompt (messages or str), responses: [str]*N,
reference?}``. The rewards file holds the same rows plus ``rewards: [float|null]*N`` and, for
the implicit rewarder, ``logps`` (summed response log-probs of the scored model) and
``num_tokens`` (and ``ref_logps`` with a reference model). NaN is written as null so the file
stays readable by ``datasets``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cream_plugin.errors import ConfigError, DataError
from cream_plugin.loop.row_files import read_rows, write_rows

HELP = "Score a samples file (N responses per prompt) with a rewarder; write a rewards file."

TABLE_COLUMNS = ("logps", "num_tokens", "ref_logps")
"""(P, N) arrays a rewarder may return in ``RewardResult.details`` that are written as columns."""


# ------------------------------------------------------------------ files


def _check_prompt(prompt: Any) -> str | None:
    if isinstance(prompt, str):
        return None
    if not isinstance(prompt, list) or not prompt:
        return "field 'prompt' must be a string or a non-empty list of {role, content}"
    for k, msg in enumerate(prompt):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) \
                or not isinstance(msg.get("content"), str):
            return f"prompt[{k}] must have string 'role' and 'content'"
    return None


def check_samples(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Validate samples rows; the error names the file, the row and the field."""
    n: int | None = None
    seen: set[str] = set()
    for k, row in enumerate(rows, start=1):
        where = f"{path}: row {k}"
        for name in ("prompt_id", "prompt", "responses"):
            if name not in row:
                raise DataError(f"{where}: missing field {name!r}")
        if isinstance(row["prompt_id"], bool) or not isinstance(row["prompt_id"], (str, int)):
            raise DataError(f"{where}: field 'prompt_id' must be a string")
        pid = str(row["prompt_id"])
        if pid in seen:
            raise DataError(f"{where}: prompt_id {pid!r} occurs twice")
        seen.add(pid)
        problem = _check_prompt(row["prompt"])
        if problem:
            raise DataError(f"{where}: {problem}")
        responses = row["responses"]
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise DataError(f"{where}: field 'responses' must be a list of strings")
        if n is None:
            n = len(responses)
        if len(responses) != n or n == 0:
            raise DataError(f"{where}: {len(responses)} responses; every row needs the same N "
                            f"(first row has {n}) and N >= 1")
        ref = row.get("reference")
        if ref is not None and not isinstance(ref, str):
            raise DataError(f"{where}: field 'reference' must be a string")


# ------------------------------------------------------------------ command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", help="samples file (.jsonl or .parquet)")
    parser.add_argument("-o", "--output", required=True, help="rewards file (.jsonl or .parquet)")
    parser.add_argument("--rewarder", help="registered rewarder name (default: rewarder.name)")
    parser.add_argument("--model", help="model to score with (default: model.name)")
    parser.add_argument("--ref-model", help="reference model of the implicit reward (optional)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="rewarder option (YAML value), e.g. beta=0.1; repeatable; "
                        "overrides rewarder.options.<name>")
    parser.add_argument("--batch-size", type=int, help="default: rewarder.batch_size")
    parser.add_argument("--cache", help="log-prob cache file: loaded if present, saved after")
    parser.add_argument("--config", help="run config YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. model.device=cpu; repeatable")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from cream_plugin.config import load_config, parse_key_values
    from cream_plugin.plugins.registry import UnknownComponentError
    from cream_plugin.rewarders import build_rewarder, score_rewarder

    cfg = load_config(args.config, args.set)
    name = args.rewarder or cfg.rewarder.name
    configured = cfg.rewarder.options.get(name) or {}  # options are keyed by rewarder name
    if not isinstance(configured, dict):
        raise ConfigError(f"rewarder.options.{name}: expected a mapping of factory options")
    options = {**configured, **parse_key_values(args.option, "--option")}
    model_name = args.model or cfg.model.name
    progress = not args.no_progress

    rows = read_rows(args.samples)
    check_samples(rows, args.samples)
    from cream_plugin.data import ensure_writable

    ensure_writable(args.output, "--output")
    prompts = [row["prompt"] for row in rows]
    responses = [list(row["responses"]) for row in rows]
    references = [row.get("reference") for row in rows]

    from cream_plugin.forward.logprobs import LogProbCache

    cache_path = Path(args.cache) if args.cache else None
    cache = LogProbCache()
    if cache_path is not None:
        ensure_writable(cache_path, "--cache")
        if cache_path.is_file():
            try:
                cache = LogProbCache.load(cache_path)
            except (TypeError, ValueError, KeyError) as exc:
                if isinstance(exc, DataError):
                    raise
                raise DataError(f"--cache {cache_path}: not a log-prob cache "
                                f"({type(exc).__name__}: {exc})") from None

    loaded: dict[str, Any] = {}

    def model() -> Any:
        if "model" not in loaded:
            from cream_plugin.forward.models import load_model

            loaded["model"] = load_model(model_name, gguf_file=cfg.model.gguf_file,
                                         dtype=cfg.model.dtype, device=cfg.model.device,
                                         trust_remote_code=cfg.model.trust_remote_code)
        return loaded["model"]

    def tokenizer() -> Any:
        from cream_plugin.forward.models import load_tokenizer

        return load_tokenizer(model_name, gguf_file=cfg.model.gguf_file,
                              trust_remote_code=cfg.model.trust_remote_code)

    def ref_model() -> Any:
        if not args.ref_model:
            return None
        from cream_plugin.forward.models import load_model

        return load_model(args.ref_model, dtype=cfg.model.dtype, device=cfg.model.device,
                          trust_remote_code=cfg.model.trust_remote_code)

    resources = {
        "model": model, "tokenizer": tokenizer, "ref_model": ref_model,
        "cache": lambda: cache, "model_key": lambda: model_name,
        "ref_key": lambda: args.ref_model or "reference",
        "batch_size": lambda: args.batch_size or cfg.rewarder.batch_size,
        "seed": lambda: cfg.seed, "progress": lambda: progress,
    }
    try:
        rewarder = build_rewarder(name, resources, options)
    except UnknownComponentError as exc:
        raise ConfigError(str(exc)) from None
    result = score_rewarder(rewarder, prompts, responses, references, name=name)

    for column in TABLE_COLUMNS:
        table = result.details.get(column)
        if table is not None and np.shape(table) != result.rewards.shape:
            raise DataError(f"rewarder {name!r}: details[{column!r}] has shape "
                            f"{np.shape(table)}; expected {result.rewards.shape}")
    out_rows = []
    for i, row in enumerate(rows):
        new = dict(row)
        new["prompt_id"] = str(row["prompt_id"])
        new["rewards"] = [float(v) for v in result.rewards[i]]
        for column in TABLE_COLUMNS:
            table = result.details.get(column)
            if table is not None:
                values = np.asarray(table)[i]
                new[column] = [int(v) if column == "num_tokens" else float(v) for v in values]
        out_rows.append(new)
    write_rows(args.output, out_rows)
    if cache_path is not None:
        try:
            cache.save(cache_path)
        except OSError as exc:
            raise DataError(f"--cache {cache_path}: cannot be written "
                            f"({exc.strerror or exc})") from None
    summary = {"rewarder": name, "prompts": len(rows), "output": str(args.output),
               "counts": dict(result.counts), "cache_hits": cache.hits,
               "cache_misses": cache.misses}
    print(json.dumps(summary), file=sys.stderr)
    return 0
