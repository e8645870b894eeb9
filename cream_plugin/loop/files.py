"""Writing files that are never half-written and never left behind: temporary names noted in
a journal before they exist, atomic renames, JSON lines that refuse infinite numbers, and
file hashing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

JOURNAL_NAME = "cream-pending.txt"


ENV_CACHE = "CREAM_CACHE_DIR"


def cache_dir() -> Path:
    """The project's cache (converted models, fetched wheels, file digests): ``$CREAM_CACHE_DIR``
    or ``~/.cache/cream-plugin``."""
    root = (
        os.environ.get(ENV_CACHE)
        or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "cream-plugin"
    )
    return Path(root).expanduser()


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


FileKey = tuple[str, int, int]
SHA256_MEMO: dict[FileKey, str] = {}
"""The one file-hash memo: sha256 by (resolved path, size, mtime_ns), so a file is hashed once
per process (artifacts verified on reuse, model and data files of a stage's identity)."""
_PERSISTED: set[FileKey] = set()
_loaded_persisted = False


def file_key(path: Path) -> FileKey:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def remember_sha256(path: Path, sha: str) -> None:
    """Note the sha256 a writer computed while writing ``path`` (verifying it re-reads nothing)."""
    SHA256_MEMO[file_key(path)] = sha


def cached_sha256(path: Path, persist: bool = False) -> str:
    """sha256 of a file from the memo, hashing it on a miss. ``persist`` also keeps the entry
    under the cache folder, so a 0.5 GB base model costs its hash once per change, not once
    per run (run artifacts are not kept there: their manifests hold their hashes)."""
    if persist:
        _load_persisted()
    key = file_key(path)
    if key not in SHA256_MEMO:
        SHA256_MEMO[key] = file_sha256(path)
    if persist and key not in _PERSISTED:
        _PERSISTED.add(key)
        try:
            # a key whose memo entry was cleared (a test's "new process") is left out
            rows = [[*k, SHA256_MEMO[k]] for k in sorted(_PERSISTED) if k in SHA256_MEMO]
            atomic_write_text(_persisted_path(), json.dumps(rows))
        except OSError:
            pass  # a read-only cache only costs a re-hash next time
    return SHA256_MEMO[key]


def _persisted_path() -> Path:
    return cache_dir() / "file-digests.json"


def _load_persisted() -> None:
    global _loaded_persisted
    if _loaded_persisted:
        return
    _loaded_persisted = True
    try:
        raw = json.loads(_persisted_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, list) and len(item) == 4:
                key = (str(item[0]), int(item[1]), int(item[2]))
                SHA256_MEMO.setdefault(key, str(item[3]))
                _PERSISTED.add(key)
