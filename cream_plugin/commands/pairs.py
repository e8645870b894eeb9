"""``cream pairs``: rewards file(s) -> preference pairs with a consistency rate per pair.

The first rewards file ranks the responses (the current model M_t); ``--previous`` is the
previous model's rewards file for the same samples, joined by ``prompt_id`` (its responses must
be the same), from which the consistency rate C is measured. ``ref_chosen_logps`` /
``ref_rejected_logps`` are copied from the current file's ``logps`` column when it has one: the
scoring model is the model DPO trains next, so these are its reference log-probs.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from cream_plugin.errors import ConfigError, DataError

HELP = "Build best-vs-worst preference pairs from rewards files, with consistency rates."

MODES = ("dynamic", "average", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rewards", help="rewards file of the current model (.jsonl or .parquet)")
    parser.add_argument("-o", "--output", required=True, help="pairs file (.jsonl or .parquet)")
    parser.add_argument("--previous", help="rewards file of the previous model, for consistency")
    parser.add_argument("--metric", help="consistency metric (default: consistency.metric)")
    parser.add_argument("--mode", choices=MODES,
                        help="per-pair C (dynamic), the data-set mean (average) or 1.0 (none)")
    parser.add_argument("--no-ref-logps", action="store_true",
                        help="do not copy the 'logps' column as ref_chosen/rejected_logps")
    parser.add_argument("--config", help="run config YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override; repeatable")


def _number(value: Any, where: str, column: str, *, allow_nan: bool) -> float:
    """One table entry: a JSON number (null = NaN where allowed); never a string or infinity."""
    if value is None:
        value = float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: {column} must hold numbers (or null), got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = float("inf") if value > 0 else float("-inf")
    if math.isinf(number) or (math.isnan(number) and not allow_nan):
        raise DataError(f"{where}: {column} value {value!r} is not a finite number"
                        + (" (use null for an unscored response)" if allow_nan else ""))
    return number


def _table(rows: list[dict[str, Any]], column: str, path: str, *, allow_nan: bool = True) -> Any:
    """The (P, N) table of one list column; each row's list is as long as its responses."""
    import numpy as np

    values = []
    for k, row in enumerate(rows, start=1):
        where = f"{path}: row {k} (prompt_id {str(row.get('prompt_id'))!r})"
        if column not in row or not isinstance(row[column], list):
            raise DataError(f"{where}: missing list field {column!r}")
        n = len(row.get("responses") or [])
        if len(row[column]) != n:
            raise DataError(f"{where}: {len(row[column])} {column} for {n} responses")
        values.append([_number(v, where, column, allow_nan=allow_nan) for v in row[column]])
    width = {len(v) for v in values}
    if len(width) > 1:
        raise DataError(f"{path}: rows have different numbers of {column}: {sorted(width)}")
    return np.asarray(values, dtype=np.float64).reshape(len(rows), width.pop() if width else 0)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from cream_plugin.commands.reward import check_samples
    from cream_plugin.config import load_config
    from cream_plugin.forward.logprobs import SequenceLogProbs
    from cream_plugin.loop.row_files import read_rows, write_rows
    from cream_plugin.plugins.registry import UnknownComponentError
    from cream_plugin.ranking.consistency import consistency_rate
    from cream_plugin.ranking.pairs import build_pairs

    cfg = load_config(args.config, args.set)
    metric = args.metric or cfg.consistency.metric
    mode = args.mode or cfg.consistency.mode

    rows = read_rows(args.rewards)
    check_samples(rows, args.rewards)
    from cream_plugin.data import ensure_writable

    ensure_writable(args.output, "--output")
    ids = [str(row["prompt_id"]) for row in rows]
    rewards = _table(rows, "rewards", args.rewards)

    consistency: Any = None
    summary: dict[str, Any] = {"prompts": len(rows), "mode": mode}
    if args.previous:
        prev_rows = read_rows(args.previous)
        check_samples(prev_rows, args.previous)  # also refuses a prompt_id that occurs twice
        by_id = {str(row["prompt_id"]): row for row in prev_rows}
        missing = [pid for pid in ids if pid not in by_id]
        if missing:
            raise DataError(
                f"{args.previous}: no rows for prompt id(s) {missing[:5]} of {args.rewards}")
        aligned = [by_id[pid] for pid in ids]
        for pid, row, prev in zip(ids, rows, aligned, strict=True):
            if list(prev.get("responses") or []) != list(row["responses"]):
                raise DataError(f"{args.previous}: prompt id {pid!r} has other responses than in "
                                f"{args.rewards}; both files must score the same samples")
        previous = _table(aligned, "rewards", args.previous)
        try:
            result = consistency_rate(rewards, previous, metric)
        except UnknownComponentError as exc:
            raise ConfigError(str(exc)) from None
        summary["consistency"] = result.summary()
        if mode == "dynamic":
            consistency = result.as_mapping(ids)
        elif mode == "average":
            consistency = dict.fromkeys(ids, result.mean)
    elif mode != "none":
        summary["consistency"] = None  # one reward table: plain DPO weights (C = 1)

    ref = None
    if not args.no_ref_logps and rows and "logps" in rows[0]:
        ref = SequenceLogProbs(_table(rows, "logps", args.rewards),
                               np.nan_to_num(_table(rows, "num_tokens", args.rewards)).astype(int)
                               if "num_tokens" in rows[0] else np.ones(rewards.shape, dtype=int))

    from collections import Counter

    stats: Counter[str] = Counter()
    pairs = build_pairs(ids, [row["prompt"] for row in rows], [row["responses"] for row in rows],
                        rewards, consistency, ref_logps=ref, stats=stats)
    write_rows(args.output, pairs)
    summary.update({"pairs": len(pairs), "stats": dict(stats), "output": str(args.output)})
    print(json.dumps(summary))
    return 0
