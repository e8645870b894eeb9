"""Copy a study folder's raw material (no checkpoints) so the tables can be regenerated from git.

Run:  python studies/pack.py RUN_DIR DEST     (or: python studies/claims.py RUN_DIR --pack DEST)

Copies every file a table reads and every record of the run: samples, log-probs, rewards,
correctness, consistency rows, pairs, movement and exact KL, per-item evaluation rows, SCIR's
agreement, timings, configs, manifests and reports. Left out: model checkpoints (any folder
holding weights), weight files, plots and temporary files. A ``.jsonl`` above ``GZIP_ABOVE``
bytes is written as ``.jsonl.gz`` (gzip with a fixed timestamp, so repacking an unchanged file
gives the same bytes and git sees no change); ``studies/folder.py`` reads either form.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

GZIP_ABOVE = 64 * 1024
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".npz")
SKIPPED = (".png", ".lock", ".tmp", ".pyc")
PLAIN = frozenset({"timings.jsonl"})  # read as text by studies/stage_times.py


def is_checkpoint(folder: Path) -> bool:
    return any((folder / name).exists() for name in
               ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "adapter_model.safetensors"))


def wanted(path: Path, top: Path) -> bool:
    rel = path.relative_to(top)
    if path.suffix in WEIGHTS or path.suffix in SKIPPED or path.name.startswith("."):
        return False
    if any(part.startswith(".") or part.endswith(".tmp") for part in rel.parts[:-1]):
        return False
    return not any(is_checkpoint(top.joinpath(*rel.parts[:i]))
                   for i in range(1, len(rel.parts)))


def pack(top: Path, dest: Path) -> tuple[int, int]:
    """Copy ``top``'s raw material into ``dest``; returns (files, bytes written)."""
    if not top.is_dir():
        raise SystemExit(f"{top}: not a folder")
    files = written = 0
    for path in sorted(p for p in top.rglob("*") if p.is_file()):
        if not wanted(path, top):
            continue
        target = dest / path.relative_to(top)
        target.parent.mkdir(parents=True, exist_ok=True)
        if (path.suffix == ".jsonl" and path.name not in PLAIN
                and path.stat().st_size > GZIP_ABOVE):
            target = target.with_name(target.name + ".gz")
            with path.open("rb") as src, target.open("wb") as raw, \
                    gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
                shutil.copyfileobj(src, out)
        else:
            shutil.copyfile(path, target)
        files += 1
        written += target.stat().st_size
    return files, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("top", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    files, size = pack(args.top, args.dest)
    print(f"{files} files, {size / 1e6:.1f} MB written to {args.dest}")


if __name__ == "__main__":
    main()
