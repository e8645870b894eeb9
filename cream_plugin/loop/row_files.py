"""Reading and writing row files (JSON lines or parquet) for the command-line tools: the
formats and the error messages that name the file. JSON lines are read and written by
:mod:`cream_plugin.loop.jsonl` (its atomic writer and its NaN rule, as for run artifacts); parquet,
which has no NaN literal of its own for a missing value, stores it as null."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.loop.files import apply_umask
from cream_plugin.loop.jsonl import read_jsonl, write_jsonl


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a jsonl or parquet file; errors name the file (and line for jsonl)."""
    path = Path(path)
    if path.suffix == ".parquet":
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        import pyarrow.parquet as pq

        try:
            return list(pq.read_table(path).to_pylist())
        except Exception as exc:
            raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    return read_jsonl(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return value


def write_rows(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    """Write rows as jsonl or parquet (by suffix), atomically (parquet: NaN becomes null).

    A location that cannot be written is a :class:`DataError` naming the path.
    """
    from cream_plugin.data import ensure_writable

    path = ensure_writable(path)
    if path.suffix != ".parquet":
        try:
            write_jsonl(path, rows)
        except OSError as exc:
            raise DataError(f"output {path}: cannot be written ({exc.strerror or exc})") from None
        return path
    clean = [_jsonable(row) for row in rows]
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise DataError(f"output {path}: cannot be written ({exc.strerror or exc})") from None
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pa.Table.from_pylist(clean)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(
                f"{path}: rows cannot be stored as parquet ({exc}); use .jsonl") from None
        pq.write_table(table, tmp)
        apply_umask(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"output {path}: cannot be written ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
