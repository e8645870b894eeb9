"""The run folder belongs to cream: a marker says so, a lock keeps out a second run, and
clean-up deletes only what cream wrote and can name.

- ``cream-run.json`` marks a folder as a cream run folder. A non-empty folder without it is
  refused (``cream run --adopt-dir`` to use it anyway): cream never spreads its files over, or
  deletes from, a folder it did not create.
- ``--adopt-dir`` uses a non-empty folder only when nothing in it sits at a name cream writes
  (``config.json``, ``report.md``, ``plots/``, ``M1/``, ...): it is refused, naming them.
- ``cream.lock`` holds the pid and host of the run using the folder. A second run refuses with
  a message naming them; a lock whose process no longer exists on this host is stale and taken
  over; another host's lock, or a lock that stays empty or unreadable (a run may be writing it
  right now), is taken over only with ``--break-lock``.
- ``--fresh`` deletes the files every manifest lists (with each checkpoint's TensorBoard
  folder ``tb/<stage>``), the run-level tables and plots cream writes by name and the journaled
  temporary files (cream_plugin.loop.artifacts.TempJournal), then the folders left empty; any other
  file (a figure of yours in ``plots/``) stays where it is.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cream_plugin.errors import ConfigError, CreamError
from cream_plugin.loop.artifacts import (
    JOURNAL_NAME,
    MANIFEST_SUFFIX,
    Artifact,
    TempJournal,
    read_manifests,
)
from cream_plugin.trainers.tracking import TB_FOLDER

log = logging.getLogger("cream.run_folder")

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
PLOT_FILES = ("plots/scores.png", "plots/consistency.png", "plots/train_curves.png")
"""The plots cream writes (cream_plugin.report.markdown, cream_plugin.report.evidence)."""
STAGE_NAMES = re.compile(r"(M[0-9]+|prompts|shared|evals|seed-[0-9]+)([./].*)?|.*\.manifest\.json"
                         r"|.*\.train_log\.json")
"""Top-level names of stage artifacts, shared folders and per-seed run folders."""
LOCK_WAIT_S = 2.0
"""How long an empty or half-written lock is re-read before it counts as held by a run that is
still starting (O_EXCL creates it a moment before its content is written)."""


class RunFolderError(CreamError, RuntimeError):
    """The run folder cannot be used: not cream's, locked by another run, or not writable."""


def is_cream_name(name: str, methods: Iterable[str] = ()) -> bool:
    """Whether a top-level entry of a run folder has a name that cream writes."""
    reserved = {*RUN_FILES, *RUN_FOLDERS, MARKER, LOCK, JOURNAL_NAME, *methods}
    return name in reserved or STAGE_NAMES.fullmatch(name) is not None


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

    def claim(self, adopt: bool = False, methods: Iterable[str] = ()) -> None:
        """Make sure the folder is (or becomes) a cream run folder that this process may write.

        ``methods``: the run's method names, folders it writes (an adopted folder must not
        hold them)."""
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
            taken = sorted(n for n in others if is_cream_name(n, methods))
            if others and adopt and not legacy and taken:
                shown = ", ".join(taken[:8]) + (", ..." if len(taken) > 8 else "")
                raise RunFolderError(
                    f"--adopt-dir: {self.path} holds {shown}, at names cream writes; cream "
                    "would overwrite or later delete them. Move them out of the folder, or "
                    "choose another --output"
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
    def acquire(self, break_lock: bool = False) -> None:
        """Take ``cream.lock`` or refuse with the holder's pid, host and start time.

        ``break_lock`` takes over a lock that cannot be shown stale from here: one of another
        host (a run preempted on one cluster node, resumed on another) or one that stays empty
        or unreadable. Only for a lock whose run is known to be gone."""
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
                holder = self._wait_for_holder(lock)
                if break_lock:
                    log.warning("--break-lock: taking over %s (held by %s)", lock, holder)
                elif holder is None:
                    raise RunFolderError(
                        f"{lock}: empty or unreadable after {LOCK_WAIT_S:g} s (a run may be "
                        "starting on this folder right now); if no cream run uses the folder, "
                        f"delete {lock} or rerun with --break-lock"
                    ) from None
                elif not self._is_stale(holder):
                    other_host = holder.get("host") != socket.gethostname()
                    raise RunFolderError(
                        f"{self.path} is in use by another cream run (pid {holder.get('pid')} "
                        f"on {holder.get('host')}, since {holder.get('started')}); wait for it "
                        "to finish" + (
                            ", or, if that run is gone (a preempted node), rerun with "
                            "--break-lock" if other_host else
                            f", or delete {lock} if no such run exists")
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
            return None  # unreadable or half-written
        return data if isinstance(data, dict) else None

    def _wait_for_holder(self, lock: Path) -> dict[str, Any] | None:
        """The lock's holder; an empty or half-written lock is re-read for LOCK_WAIT_S (its run
        may have created it a moment ago), and None means it never became readable."""
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            holder = self._holder(lock)
            if holder is not None or time.monotonic() >= deadline or not lock.exists():
                return holder
            time.sleep(0.05)

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
            if m.get("kind") == "folder":
                paths += stage.files()  # the files it lists, not the folder: yours stay
            else:
                paths.append(stage.rows_path)
            paths.append(stage.manifest_path)
            if m.get("kind") == "folder":
                paths.append(self.path / f"{name}.train_log.json")
                paths.append(self.path / TB_FOLDER / name)  # its TensorBoard logs
        paths += [self.path / f for f in RUN_FILES + PLOT_FILES]
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
