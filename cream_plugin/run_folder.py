"""The run folder belongs to cream: a marker says so, a lock keeps out a second run, and
clean-up deletes only what cream wrote and can name.

- ``cream-run.json`` marks a folder as a cream run folder. A non-empty folder without it is
  refused (``cream run --adopt-dir`` to use it anyway): cream never spreads its files over, or
  deletes from, a folder it did not create.
- ``cream.lock`` holds the pid and host of the run using the folder. A second run refuses with
  a message naming them; a lock whose process no longer exists on this host is stale and taken
  over.
- ``--fresh`` deletes the files every manifest lists, the run-level tables cream writes and the
  journaled temporary files (cream_plugin.artifacts.TempJournal), then the folders left empty;
  any other file stays where it is.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cream_plugin.artifacts import MANIFEST_SUFFIX, Artifact, TempJournal, read_manifests
from cream_plugin.errors import ConfigError, CreamError

MARKER = "cream-run.json"
LOCK = "cream.lock"
RUN_FILES = (
    "config.json",
    "results.jsonl",
    "consistency.jsonl",
    "timings.jsonl",
    "instruments.json",
    "report.md",
)
RUN_FOLDERS = ("plots", "tb")
"""Run-level files and folders cream writes beside the stage artifacts."""


class RunFolderError(CreamError, RuntimeError):
    """The run folder cannot be used: not cream's, locked by another run, or not writable."""


def check_output_dir(raw: str) -> Path:
    """The run folder path, refusing an empty value (it would mean the current folder)."""
    if not str(raw).strip():
        raise ConfigError("output_dir: empty; name the run folder (e.g. runs/cream)")
    return Path(raw).expanduser()


class RunFolder:
    """A run folder: ownership, the lock and clean-up of cream's own files."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    def is_cream_folder(self) -> bool:
        return self.marker.is_file()

    def claim(self, adopt: bool = False) -> None:
        """Make sure the folder is (or becomes) a cream run folder that this process may write."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path}: exists and is not a folder")
        if self.path.is_dir() and not self.is_cream_folder():
            others = [p.name for p in self.path.iterdir()]
            legacy = (self.path / "config.json").is_file() and read_manifests(self.path)
            if others and not (adopt or legacy):
                shown = ", ".join(sorted(others)[:5]) + (", ..." if len(others) > 5 else "")
                raise RunFolderError(
                    f"{self.path}: not empty and not a cream run folder (holds {shown}); "
                    "choose another --output, or pass --adopt-dir to use it anyway "
                    "(cream then deletes only files it wrote itself)"
                )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if not self.is_cream_folder():
                from cream_plugin import __version__

                text = json.dumps(
                    {
                        "format": 1,
                        "created": datetime.now(UTC).isoformat(timespec="seconds"),
                        "cream_plugin": __version__,
                    },
                    indent=2,
                )
                self.marker.write_text(text + "\n", encoding="utf-8")
        except PermissionError as exc:
            raise RunFolderError(f"{self.path}: not writable ({exc.strerror})") from None

    # -- the lock ------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take ``cream.lock`` or refuse with the holder's pid, host and start time."""
        lock = self.path / LOCK
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder(lock)
                if holder is not None and not self._is_stale(holder):
                    raise RunFolderError(
                        f"{self.path} is in use by another cream run (pid {holder.get('pid')} "
                        f"on {holder.get('host')}, since {holder.get('started')}); wait for it "
                        f"to finish, or delete {lock} if no such run exists"
                    ) from None
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except PermissionError as exc:
                raise RunFolderError(f"{self.path}: not writable ({exc.strerror})") from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(me, handle)
            return
        raise RunFolderError(f"{lock}: could not be taken (another run raced for it)")

    def release(self) -> None:
        lock = self.path / LOCK
        holder = self._holder(lock)
        if holder and holder.get("pid") == os.getpid():
            lock.unlink(missing_ok=True)

    @staticmethod
    def _holder(lock: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(lock.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable or half-written: treat as stale
        return data if isinstance(data, dict) else None

    @staticmethod
    def _is_stale(holder: dict[str, Any]) -> bool:
        if holder.get("host") != socket.gethostname():
            return False  # cannot tell for another machine: never steal it
        try:
            os.kill(int(holder.get("pid", -1)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, TypeError):
            return False
        return False

    # -- clean-up ------------------------------------------------------------------------
    def clean_leftovers(self) -> list[str]:
        """Temporary files and folders of a killed run (listed in the journal), nothing else."""
        return TempJournal(self.path).clean()

    def owned_paths(self) -> list[Path]:
        """Every file and folder cream wrote here and can name."""
        paths: list[Path] = []
        for name, m in read_manifests(self.path).items():
            stage = Artifact(self.path, name, "")
            paths.append(stage.folder_path if m.get("kind") == "folder" else stage.rows_path)
            paths.append(stage.manifest_path)
            if m.get("kind") == "folder":
                paths.append(self.path / f"{name}.train_log.json")
        paths += [self.path / f for f in RUN_FILES] + [self.path / d for d in RUN_FOLDERS]
        paths += self._card_files(paths)
        return paths

    @staticmethod
    def _card_files(paths: list[Path]) -> list[Path]:
        """Data set cards (README.md) cream wrote beside its artifacts: they carry its tag."""
        cards = []
        for folder in {p.parent for p in paths}:
            card = folder / "README.md"
            try:
                head = card.read_text(encoding="utf-8")[:2000]
            except (OSError, UnicodeDecodeError):
                continue
            if head.startswith("---") and "cream-plugin" in head:
                cards.append(card)
        return cards

    def wipe(self) -> list[str]:
        """``--fresh``: delete cream's own files only, then the folders that became empty."""
        removed = self.clean_leftovers()
        folders: set[Path] = set()
        for path in self.owned_paths():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(str(path.relative_to(self.path)))
            folders.update(p for p in path.parents if self.path in p.parents)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return removed

    def remove_stage(self, name: str) -> list[str]:
        """``cream clean --stage NAME``: forget one stage so the next run recomputes it."""
        if not (self.path / f"{name}{MANIFEST_SUFFIX}").is_file():
            known = ", ".join(sorted(read_manifests(self.path))) or "none"
            raise RunFolderError(f"{self.path}: no stage {name!r}; stages here: {known}")
        Artifact(self.path, name, "").invalidate()
        return [name]
