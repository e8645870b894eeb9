"""The log-prob cache: results of ``response_logps`` kept across calls and stages.

A (model state, prompt, response) triple is scored once per run; the cache file is JSON lines,
written atomically, and a broken line is reported with its file and line.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cream_plugin.loop.jsonl import read_jsonl, write_jsonl
from cream_plugin.plugins.interfaces import Prompt

CacheKey = tuple[str, str, str]


def prompt_key(prompt: Prompt) -> str:
    """A canonical string for a prompt, so message lists can key a cache."""
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


_CACHE_FIELDS = ("model", "prompt", "response", "sum", "num_tokens")


def _check_cache_row(row: dict[str, Any]) -> str | None:
    missing = [k for k in _CACHE_FIELDS if k not in row]
    if missing:
        return f"not a log-prob cache row (missing {', '.join(missing)})"
    if not isinstance(row["sum"], (int, float)) or not isinstance(row["num_tokens"], int):
        return "not a log-prob cache row ('sum' must be a number, 'num_tokens' an integer)"
    return None


class LogProbCache:
    """(model_key, prompt, response) -> (summed log-prob, number of tokens), with hit counters.

    ``model_key`` names a model *state* (e.g. ``"iter2"``): the caller must change it when the
    weights change. Results computed with a ``max_length`` are stored under
    ``"<model_key>@max<max_length>"`` because truncation changes them.
    """

    def __init__(self) -> None:
        self._data: dict[CacheKey, tuple[float, int]] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model_key: str, prompt: Prompt, response: str) -> CacheKey:
        return (model_key, prompt_key(prompt), response)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: CacheKey) -> tuple[float, int] | None:
        return self._data.get(key)

    def put(self, key: CacheKey, value: tuple[float, int]) -> None:
        self._data[key] = (float(value[0]), int(value[1]))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the cache as JSON lines, atomically (a temporary file renamed into place)."""
        write_jsonl(path, (
            {"model": model, "prompt": prompt, "response": response, "sum": total,
             "num_tokens": count}
            for (model, prompt, response), (total, count) in self._data.items()
        ))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LogProbCache:
        """Read a cache written by :meth:`save`; a broken line raises DataError naming it."""
        cache = cls()
        for row in read_jsonl(path, _check_cache_row):
            key = (row["model"], row["prompt"], row["response"])
            cache._data[key] = (float(row["sum"]), int(row["num_tokens"]))
        return cache
