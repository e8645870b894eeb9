"""Checking and merging config values: type coercion with messages that name the dotted key,
range and pattern checks, ``KEY=VALUE`` overrides (the one parser of every ``--set`` and
``--option``) and the deep merge of preset, file and overrides."""

from __future__ import annotations

import copy
import math
import re
import types
import typing
from typing import Any

import yaml

from cream_plugin.errors import ConfigError


def type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        return parse_number(value, key)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - programming error


def parse_number(value: Any, key: str) -> float:
    """A finite float from a number or a numeric string.

    YAML 1.1 reads ``1e-6`` (no dot) as a string, so numeric strings are accepted; NaN and
    infinities (``.nan``, ``.inf``, ``"1e400"``) are refused because every float setting is used
    in arithmetic where they would silently poison the run.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    elif isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise ConfigError(f"{key}: {value!r} is too large for a float") from None
    else:
        raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return number


def check_range(value: Any, meta: typing.Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    pattern = meta.get("pattern")
    if pattern and isinstance(value, str) and not re.fullmatch(pattern, value):
        doc = meta.get("doc") or f"a string matching {pattern}"
        raise ConfigError(f"{key}: {value!r} is not valid (expected {doc})")
    if choices and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
    lo, hi = meta.get("lo"), meta.get("hi")
    values = value if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, (int, float)):
            continue
        if lo is not None and (v <= lo if meta.get("lo_open") else v < lo):
            bound = f"> {lo}" if meta.get("lo_open") else f">= {lo}"
            raise ConfigError(f"{key}: {v!r} is out of range (must be {bound})")
        if hi is not None and v > hi:
            raise ConfigError(f"{key}: {v!r} is out of range (must be <= {hi})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error (PyYAML keeps
    the last one silently, so a setting written twice would quietly lose its first value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: construct_mapping's own error names it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} on line {line} (first on line {first}); "
                    "write each setting once", None)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (naming the key and its lines)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass


def parse_override(text: str) -> tuple[list[str], Any]:
    """``training.beta=0.2`` -> (["training", "beta"], 0.2); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. training.beta=0.2")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r}: empty key before '='")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({error_text(exc)})"
                          ) from None
    return key.strip().split("."), value


def parse_key_values(items: list[str], flag: str = "--set") -> dict[str, Any]:
    """``["beta=0.1", "name=x"]`` -> ``{"beta": 0.1, "name": "x"}`` (flat keys, YAML values),
    by the same rules as a run's ``--set``; the error names the flag."""
    out: dict[str, Any] = {}
    for text in items:
        try:
            path, value = parse_override(text)
        except ConfigError as exc:
            raise ConfigError(f"{flag}: {exc}") from None
        out[".".join(path)] = value
    return out


def error_text(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def merge_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def deep_merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value
    return into
