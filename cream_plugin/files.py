"""Writing files that are never half-written and never left behind: temporary names noted in
a journal before they exist, atomic renames, JSON lines that refuse infinite numbers, and
file hashing."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cream_plugin.errors import DataError

JOURNAL_NAME = "cream-pending.txt"


class TempJournal:
    """The temporary paths a run folder's writers create, listed before they exist.

    After a kill, :meth:`clean` removes exactly those (if still there) and nothing else: a
    user's own hidden files and folders inside the run folder are never touched.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / JOURNAL_NAME

    def temp_path(self, target: Path, suffix: str = ".tmp") -> Path:
        """A fresh hidden name beside ``target``, noted in the journal before it is created."""
        tmp = target.parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"
        self.note(tmp)
        return tmp

    def note(self, path: Path) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            rel = path.resolve().relative_to(self.run_dir.resolve())
        except ValueError:
            raise ValueError(f"{path} is outside the run folder {self.run_dir}") from None
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(str(rel) + "\n")
            handle.flush()

    def clean(self) -> list[str]:
        """Delete every journaled path that still exists, then the journal; returns them."""
        if not self.path.is_file():
            return []
        removed = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            rel = line.strip()
            if not rel or rel.startswith("/") or ".." in Path(rel).parts:
                continue
            path = self.run_dir / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(rel)
            elif path.exists() or path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(rel)
        self.path.unlink(missing_ok=True)
        for rel in removed:  # the stage folders those files were in, when left empty
            for parent in (self.run_dir / rel).parents:
                if parent == self.run_dir or self.run_dir not in parent.parents:
                    break
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
        return removed


def atomic_write_text(path: Path, text: str, journal: TempJournal | None = None) -> None:
    """Write a whole file under a temporary name, then rename it: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = (
        journal.temp_path(path)
        if journal
        else path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    )
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write (full disk, ulimit -f) names its file
        raise


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


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def current_umask() -> int:
    """The process's umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (and everything under it) the modes a plain ``mkdir``/``open`` would have.

    ``tempfile.mkdtemp``/``mkstemp`` create 0700/0600 whatever the umask; a cache or an output
    built under such a name and renamed into place would be unreadable to the user's group
    (a shared model cache, a shared run folder). Folders get 0777 & ~umask, files 0666 & ~umask.
    """
    mask = current_umask()
    root = Path(path)
    entries = [root] if not root.is_dir() else [root, *root.rglob("*")]
    for entry in entries:
        if entry.is_symlink():
            continue
        entry.chmod((0o777 if entry.is_dir() else 0o666) & ~mask)
