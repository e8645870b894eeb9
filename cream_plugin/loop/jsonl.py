"""JSON lines, the one format of cream's row files (run artifacts, tables, CLI outputs): the
reader, the atomic writer, the appender and the one rule for non-finite numbers.

The rule: NaN is written as JSON's ``NaN`` literal (the documented "no value" of a reward, a C
or a correctness that is undefined) and read back as NaN; +-inf is refused when writing, naming
the field, because it only ever comes from a broken number. (Parquet outputs of the CLI store
a missing value as null: see :mod:`cream_plugin.loop.row_files`.)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.loop.files import TempJournal, atomic_write_text


def read_jsonl(
    path: str | os.PathLike[str],
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a malformed row raises DataError naming the file and line.

    Lines are decoded one by one, so bytes that are not UTF-8 are reported with their line.
    JSON's ``NaN`` / ``Infinity`` literals are read as floats: the readers of each kind of file
    decide whether a non-finite value is allowed where it occurs.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a JSON-lines file")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows: list[dict[str, Any]] = []
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: not UTF-8 text (byte {exc.start} of the line)") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            except (ValueError, RecursionError) as exc:  # huge integers, absurd nesting
                raise DataError(f"{path}:{lineno}: not usable JSON ({exc})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object")
            problem = check(row) if check else None
            if problem:
                raise DataError(f"{path}:{lineno}: {problem}")
            rows.append(row)
    return rows


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]],
                journal: TempJournal | None = None) -> None:
    """Write a whole JSON-lines file atomically (a temporary name, then a rename)."""
    atomic_write_text(Path(path), "".join(json_line(row) for row in rows), journal=journal)


def append_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows to a JSON-lines table (results, timings, consistency), one line each."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json_line(row))
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)  # a failed write (full disk, ulimit -f) names its file
        raise


def json_line(row: Mapping[str, Any]) -> str:
    """One JSON line. NaN is kept (the documented "no value" of a reward or a C that is
    undefined); +-inf is refused, naming the field: it only ever comes from a broken number."""
    bad = [str(k) for k, v in row.items() if _has_inf(v)]
    if bad:
        raise DataError(f"non-finite (infinite) value in field(s) {', '.join(bad)}")
    return json.dumps(row, ensure_ascii=False, default=_json_default) + "\n"


def _has_inf(value: Any) -> bool:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return value in (math.inf, -math.inf)
    if isinstance(value, (list, tuple)):
        return any(_has_inf(v) for v in value)
    if isinstance(value, dict):
        return any(_has_inf(v) for v in value.values())
    return False


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
