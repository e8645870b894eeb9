"""Stage artifacts with manifests: what makes a run resumable and a killed run harmless.

Each pipeline stage writes one artifact (a JSON-lines file that ``datasets`` reads, or a
checkpoint folder) and then a manifest ``<name>.manifest.json``. Both are written to a temporary
name and renamed, and the manifest goes last, so an artifact only reads as complete once all
of it is on disk. A stage is complete when its manifest says so with the same config hash and
the same input digests; a stage's ``digest`` feeds its dependents' ``inputs``, so changing an
upstream setting invalidates everything downstream of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cream_plugin.data import read_jsonl
from cream_plugin.errors import DataError

MANIFEST_SUFFIX = ".manifest.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write a whole file under a temporary name, then rename it: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows to a JSON-lines table (results, timings, consistency), one line each."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class Stage:
    """One stage's artifact (rows or a folder) under ``run_dir`` and its manifest.

    ``name`` may contain ``/`` (e.g. ``cream/iter2/samples``) to group a method's stages.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        name: str,
        config_hash: str,
        inputs: Mapping[str, str] | None = None,
    ) -> None:
        if not name or name.startswith("/") or ".." in Path(name).parts:
            raise ValueError(f"stage name {name!r} must be a relative path inside the run folder")
        self.run_dir = Path(run_dir)
        self.name = name
        self.config_hash = str(config_hash)
        self.inputs = {str(k): str(v) for k, v in (inputs or {}).items()}
        self.rows_path = self.run_dir / f"{name}.jsonl"
        self.folder_path = self.run_dir / name
        self.manifest_path = self.run_dir / f"{name}{MANIFEST_SUFFIX}"
        self._started = time.perf_counter()

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, config_hash={self.config_hash!r})"

    # -- state ---------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any] | None:
        """The manifest on disk, or None when there is none or it is unreadable."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def is_complete(self) -> bool:
        """True when the artifact is fully written for this config and these inputs."""
        m = self.manifest()
        if not m or m.get("complete") is not True:
            return False
        if m.get("config_hash") != self.config_hash or m.get("inputs") != self.inputs:
            return False
        if m.get("kind") == "rows":
            return self.rows_path.is_file()
        return m.get("pruned") is True or self.folder_path.is_dir()

    def is_available(self) -> bool:
        """Complete and its files still on disk (a pruned checkpoint is complete, not available)."""
        m = self.manifest() or {}
        return self.is_complete() and not m.get("pruned")

    @property
    def digest(self) -> str:
        """Hash of this stage's output; downstream stages list it in their ``inputs``."""
        m = self.manifest()
        if not self.is_complete() or m is None:
            raise DataError(f"stage {self.name!r} in {self.run_dir} is not complete")
        return str(m["digest"])

    def invalidate(self) -> None:
        """Forget the stage (manifest first, so a crash in between leaves nothing complete)."""
        self.manifest_path.unlink(missing_ok=True)
        self.rows_path.unlink(missing_ok=True)
        if self.folder_path.is_dir():
            shutil.rmtree(self.folder_path)

    def start(self) -> None:
        """Reset the clock that the manifest's ``seconds`` reports."""
        self._started = time.perf_counter()

    # -- writing -------------------------------------------------------------------------
    def _digest_of(self, content: str) -> str:
        blob = json.dumps(
            [self.name, self.config_hash, sorted(self.inputs.items()), content], sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _write_manifest(self, kind: str, rows: int | None, content: str, **extra: Any) -> None:
        manifest = {
            "stage": self.name,
            "kind": kind,
            "config_hash": self.config_hash,
            "inputs": self.inputs,
            "rows": rows,
            "content_sha256": content,
            "digest": self._digest_of(content),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - self._started, 3),
            "complete": True,
            **extra,
        }
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2) + "\n")

    def write_rows(self, rows: Iterable[Mapping[str, Any]], **extra: Any) -> str:
        """Write all rows (JSON lines), then the manifest; returns the new digest.

        ``rows`` may be a generator: if it raises, the old artifact is gone and nothing is
        marked complete. Extra keyword arguments are stored in the manifest (e.g. counts).
        """
        self.manifest_path.unlink(missing_ok=True)
        self.rows_path.parent.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256()
        count = 0
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.rows_path.name}.", suffix=".tmp", dir=self.rows_path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                for row in rows:
                    line = json.dumps(row, ensure_ascii=False, default=_json_default) + "\n"
                    handle.write(line)
                    sha.update(line.encode("utf-8"))
                    count += 1
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.rows_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._write_manifest("rows", count, sha.hexdigest(), **extra)
        return self.digest

    def read_rows(self) -> list[dict[str, Any]]:
        """The rows of a complete artifact; DataError when it is missing or incomplete."""
        m = self.manifest()
        if not m or m.get("complete") is not True or m.get("kind") != "rows":
            raise DataError(f"{self.rows_path}: no complete artifact (missing or half-written)")
        rows = read_jsonl(self.rows_path)
        if m.get("rows") is not None and len(rows) != m["rows"]:
            raise DataError(
                f"{self.rows_path}: has {len(rows)} rows, its manifest says {m['rows']}"
            )
        return rows

    def write_folder(self, fn: Callable[[Path], Any], **extra: Any) -> Path:
        """Let ``fn(tmp_folder)`` fill a temporary folder, then rename it into place.

        Used for checkpoints: an exception inside ``fn`` leaves no folder and no manifest.
        """
        self.manifest_path.unlink(missing_ok=True)
        self.folder_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{self.folder_path.name}.", dir=self.folder_path.parent)
        )
        try:
            fn(tmp)
            if self.folder_path.exists():
                shutil.rmtree(self.folder_path)
            tmp.rename(self.folder_path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        files = sorted(
            (str(p.relative_to(self.folder_path)), p.stat().st_size)
            for p in self.folder_path.rglob("*")
            if p.is_file()
        )
        content = hashlib.sha256(json.dumps(files).encode()).hexdigest()
        self._write_manifest("folder", None, content, **extra)
        return self.folder_path


def prune_checkpoints(run_dir: str | os.PathLike[str], keep: Collection[str]) -> list[str]:
    """Delete every checkpoint folder stage whose name is not in ``keep``; returns their names.

    The manifest stays (marked ``pruned``), so dependents keep their digests and the stage
    still counts as complete; ``Stage.is_available()`` tells whether the files are still there.
    """
    run_dir = Path(run_dir)
    pruned = []
    for manifest_path in sorted(run_dir.rglob(f"*{MANIFEST_SUFFIX}")):
        try:
            m = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(m, dict) or m.get("kind") != "folder" or m.get("pruned"):
            continue
        name = str(manifest_path.relative_to(run_dir))[: -len(MANIFEST_SUFFIX)]
        if name in keep:
            continue
        m["pruned"] = True
        atomic_write_text(manifest_path, json.dumps(m, indent=2) + "\n")
        folder = run_dir / name
        if folder.is_dir():
            shutil.rmtree(folder)
        pruned.append(name)
    return pruned
