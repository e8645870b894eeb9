"""What a stage's identity is made of besides config settings: digests of the data files and
model files it reads, so a changed file (not only a changed setting) invalidates it.

A file is hashed once and its sha256 remembered under the cache folder by (path, size,
mtime) (:func:`cream_plugin.loop.files.cached_sha256`), so a 0.5 GB checkpoint costs its hash once
per change, not once per run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from cream_plugin.loop.files import cached_sha256


def files_digest(paths: Iterable[Path], root: Path | None = None) -> str:
    """One digest over several files' names (relative to ``root``) and contents."""
    parts = []
    for path in sorted(paths):
        name = str(path.relative_to(root)) if root else path.name
        parts.append((name, cached_sha256(path, persist=True)))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def data_digest(names_splits: Iterable[tuple[str, str]], data_dir: str | None) -> str:
    """Digest of the benchmark/seed files a stage reads, or of their Hub names when the data
    come from the Hub (no local folder)."""
    from cream_plugin.data import local_path, resolve_data_dir

    folder = resolve_data_dir(data_dir)
    pairs = sorted(set(names_splits))
    if folder is None:
        return "hub:" + ",".join(f"{n}/{s}" for n, s in pairs)
    return files_digest([local_path(n, s, folder) for n, s in pairs], folder)


def evaluation_data_digest(data_dir: str | None) -> str:
    """Digest of every evaluation split in the data folder (test and validation files)."""
    from cream_plugin.data import resolve_data_dir

    folder = resolve_data_dir(data_dir)
    if folder is None:
        return "hub"
    files = [p for p in folder.glob("*/*.jsonl") if p.stem in ("test", "validation")]
    return files_digest(files, folder)


def folder_digest(folder: Path, suffixes: tuple[str, ...] = ()) -> str:
    """Digest of a model folder's files (all, or those with the given suffixes)."""
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file() and (not suffixes or p.suffix in suffixes) and not p.name.startswith(".")
    ]
    return files_digest(files, folder)


def model_digest(name: str, gguf_file: str | None) -> str:
    """Digest of the base model's files (a local folder or GGUF file); the spec for a Hub id."""
    from cream_plugin.forward.models import resolve_model_path

    path, gguf = resolve_model_path(name, gguf_file)
    folder = Path(path)
    if gguf:
        return files_digest([folder / gguf], folder)
    if folder.is_dir():
        return folder_digest(folder, (".safetensors", ".bin", ".json", ".model", ".txt"))
    return f"hub:{name}"


def code_digest(folder: Path, pattern: str = "*") -> str:
    """Digest of source files (e.g. the lm-eval task YAMLs): a code change is an input too."""
    return files_digest([p for p in folder.rglob(pattern) if p.is_file()], folder)


def env_flag(name: str) -> str:
    return os.environ.get(name, "")
