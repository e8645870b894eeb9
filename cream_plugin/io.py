"""Reading and writing row files (JSON lines or parquet) for the command-line tools: one place
for the formats, the atomic write (temporary name, then rename) and the error messages that
name the file. Run artifacts use the same JSON-lines rules (cream_plugin.artifacts)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.files import apply_umask


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a jsonl or parquet file; errors name the file (and line for jsonl)."""
    from cream_plugin.data import read_jsonl

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
    """Write rows as jsonl or parquet (by suffix), atomically; NaN becomes null.

    A location that cannot be written is a :class:`DataError` naming the path.
    """
    from cream_plugin.data import ensure_writable

    path = ensure_writable(path)
    clean = [_jsonable(row) for row in rows]
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise DataError(f"output {path}: cannot be written ({exc.strerror or exc})") from None
    try:
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                table = pa.Table.from_pylist(clean)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise DataError(
                    f"{path}: rows cannot be stored as parquet ({exc}); use .jsonl") from None
            pq.write_table(table, tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as handle:
                for row in clean:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        apply_umask(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"output {path}: cannot be written ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
