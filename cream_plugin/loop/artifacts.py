"""Stage artifacts with manifests: what makes a run resumable, a killed run harmless and a
tampered artifact detectable.

Each pipeline stage writes one artifact (a JSON-lines file that ``datasets`` reads, or a
checkpoint folder) and then a manifest ``<name>.manifest.json``. Both are written under a
temporary name and renamed, and the manifest goes last, so an artifact only reads as complete
once all of it is on disk. Every temporary name is noted in the run folder's journal
(:class:`TempJournal`) before it is created, so clean-up after a kill deletes exactly the files
cream made and nothing else. The manifest records the size and sha256 of every file; a reused
artifact is checked against them (:meth:`Artifact.verify`) so a hand-edited or truncated file
is an error, never a silent input. A stage is complete when its manifest says so with the same
config hash and the same input digests; a stage's ``digest`` feeds its dependents' ``inputs``, so a
changed upstream setting or content invalidates everything downstream of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cream_plugin.errors import DataError
from cream_plugin.loop.files import (
    JOURNAL_NAME,
    TempJournal,
    atomic_write_text,
    cached_sha256,
    file_sha256,
    remember_sha256,
)
from cream_plugin.loop.jsonl import append_jsonl, json_line, read_jsonl

__all__ = [
    "JOURNAL_NAME",
    "MANIFEST_SUFFIX",
    "Artifact",
    "TempJournal",
    "append_jsonl",
    "atomic_write_text",
    "file_sha256",
    "json_line",
    "prune_checkpoints",
    "read_manifests",
]

MANIFEST_SUFFIX = ".manifest.json"


class Artifact:
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
        self.journal = TempJournal(self.run_dir)
        self._started = time.perf_counter()

    def __repr__(self) -> str:
        return f"Artifact({self.name!r}, config_hash={self.config_hash!r})"

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

    def files(self) -> list[Path]:
        """The files this artifact consists of (what ``--fresh`` and ``cream clean`` delete)."""
        m = self.manifest() or {}
        if m.get("kind") == "folder":
            return [self.folder_path / rel for rel, _, _ in m.get("files", [])]
        return [self.rows_path]

    def verify(self) -> None:
        """Check the artifact on disk against its manifest: sizes always, sha256 once per
        process. A mismatch (edited, truncated or replaced file) raises DataError naming it."""
        m = self.manifest()
        if not m:
            raise DataError(f"{self.manifest_path}: missing or unreadable manifest")
        if m.get("pruned"):
            return
        if m.get("kind") == "rows":
            expected = [(self.rows_path.name, m.get("size"), m.get("content_sha256"))]
            base = self.rows_path.parent
        else:
            expected = [(rel, size, sha) for rel, size, sha in m.get("files", [])]
            base = self.folder_path
        for rel, size, sha in expected:
            path = base / rel
            hint = (
                "the artifact changed after it was written; rerun with --fresh, or "
                f"`cream clean {self.run_dir} --stage {self.name}` to recompute this stage"
            )
            if not path.is_file():
                raise DataError(f"{path}: missing ({hint})")
            if size is not None and path.stat().st_size != size:
                raise DataError(
                    f"{path}: {path.stat().st_size} bytes, its manifest says {size} ({hint})"
                )
            if sha and cached_sha256(path) != sha:  # hashed once per process
                raise DataError(f"{path}: sha256 differs from its manifest ({hint})")

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
        atomic_write_text(
            self.manifest_path, json.dumps(manifest, indent=2) + "\n", journal=self.journal
        )

    def write_rows(
        self,
        rows: Iterable[Mapping[str, Any]],
        on_half: Callable[[], None] | None = None,
        expected_rows: int | None = None,
        **extra: Any,
    ) -> str:
        """Write all rows (JSON lines), then the manifest; returns the new digest.

        ``rows`` may be a generator: if it raises, the old artifact is gone and nothing is
        marked complete. ``on_half`` is called once half of ``expected_rows`` are written
        (the fault-injection point of the tests). Extra keyword arguments go to the manifest.
        """
        self.manifest_path.unlink(missing_ok=True)
        self.rows_path.parent.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256()
        count = size = 0
        halfway = (expected_rows or 0) // 2
        tmp = self.journal.temp_path(self.rows_path)
        try:
            with open(tmp, "x", encoding="utf-8") as handle:
                for row in rows:
                    if on_half and count == halfway:
                        handle.flush()
                        on_half()
                        on_half = None
                    line = json_line(row).encode("utf-8")
                    handle.write(line.decode("utf-8"))
                    sha.update(line)
                    size += len(line)
                    count += 1
                if on_half:  # no rows at all
                    on_half()
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.rows_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        remember_sha256(self.rows_path, sha.hexdigest())
        self._write_manifest("rows", count, sha.hexdigest(), size=size, **extra)
        return self.digest

    def read_rows(self) -> list[dict[str, Any]]:
        """The rows of a complete, verified artifact; DataError when missing, incomplete or
        changed since it was written."""
        m = self.manifest()
        if not m or m.get("complete") is not True or m.get("kind") != "rows":
            raise DataError(f"{self.rows_path}: no complete artifact (missing or half-written)")
        self.verify()
        rows = read_jsonl(self.rows_path)
        if m.get("rows") is not None and len(rows) != m["rows"]:
            raise DataError(
                f"{self.rows_path}: has {len(rows)} rows, its manifest says {m['rows']}"
            )
        return rows

    def write_folder(
        self,
        fn: Callable[[Path], Any],
        on_half: Callable[[], None] | None = None,
        **extra: Any,
    ) -> Path:
        """Let ``fn(tmp_folder)`` fill a temporary folder, then rename it into place.

        Used for checkpoints: an exception inside ``fn`` leaves no folder and no manifest. The
        manifest lists every file with its size and sha256; the digest is their content hash.
        """
        self.manifest_path.unlink(missing_ok=True)
        self.folder_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.journal.temp_path(self.folder_path, suffix="")
        tmp.mkdir()
        try:
            fn(tmp)
            if on_half:
                on_half()
            if self.folder_path.exists():
                shutil.rmtree(self.folder_path)
            tmp.rename(self.folder_path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        files = []
        for p in sorted(self.folder_path.rglob("*")):
            if p.is_file():
                sha = cached_sha256(p)
                files.append((str(p.relative_to(self.folder_path)), p.stat().st_size, sha))
        content = hashlib.sha256(json.dumps(files).encode()).hexdigest()
        self._write_manifest("folder", None, content, files=files, **extra)
        return self.folder_path


def read_manifests(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Stage name -> manifest for every readable manifest under ``run_dir``."""
    run_dir = Path(run_dir)
    out = {}
    for path in sorted(run_dir.rglob(f"*{MANIFEST_SUFFIX}")):
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(m, dict) and "kind" in m:
            out[str(path.relative_to(run_dir))[: -len(MANIFEST_SUFFIX)]] = m
    return out


def prune_checkpoints(run_dir: str | os.PathLike[str], keep: Collection[str]) -> list[str]:
    """Delete every checkpoint folder stage whose name is not in ``keep``; returns their names.

    The manifest stays (marked ``pruned``), so dependents keep their digests and the stage
    still counts as complete; ``Artifact.is_available()`` tells whether the files are still there.
    A later run that needs a pruned checkpoint trains it again (cream_plugin.loop.runner).
    """
    run_dir = Path(run_dir)
    pruned = []
    for name, m in read_manifests(run_dir).items():
        if m.get("kind") != "folder" or m.get("pruned") or name in keep:
            continue
        m["pruned"] = True
        atomic_write_text(
            run_dir / f"{name}{MANIFEST_SUFFIX}",
            json.dumps(m, indent=2) + "\n",
            journal=TempJournal(run_dir),
        )
        folder = run_dir / name
        if folder.is_dir():
            shutil.rmtree(folder)
        pruned.append(name)
    return pruned
