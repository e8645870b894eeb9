"""``cream tasks-path``: the one folder to pass to ``lm_eval --include_path``.

lm-eval 0.4.13's CLI takes a single include folder. With one registered task folder (the
built-ins) that folder is printed; when plugins register more, their folders are copied side by
side into one folder under the cache and that is printed, so the lm_eval command stays the same.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HELP = "Print the folder to pass to lm_eval --include_path (all registered task folders)."


def merged_tasks_folder(paths: list[str], target: Path) -> Path:
    """Copy every task folder into ``target/<index>-<name>`` (fresh each call)."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for index, path in enumerate(paths):
        source = Path(path)
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(source, tmp / f"{index}-{source.name}", ignore=ignore)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all", action="store_true", help="print every registered folder, one per line"
    )


def run(args: argparse.Namespace) -> int:
    from cream_plugin.forward.models import cache_dir
    from cream_plugin.plugins.registry import task_paths

    paths = task_paths()
    if args.all or len(paths) <= 1:
        print("\n".join(paths))
        return 0
    print(merged_tasks_folder(paths, cache_dir() / "lm-eval-tasks"))
    return 0
