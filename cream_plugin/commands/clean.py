"""``cream clean RUN_DIR``: remove a killed run's temporary files and a stale lock, or forget
stages (``--stage NAME``) so the next ``cream run`` computes them again."""

from __future__ import annotations

import argparse

HELP = "Remove a killed run's leftovers, or forget stages so the next run recomputes them."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder")
    parser.add_argument(
        "--stage",
        action="append",
        default=[],
        metavar="NAME",
        help="a stage to forget (its artifact and manifest), e.g. cream/iter2/pairs; repeatable",
    )


def run(args: argparse.Namespace) -> int:
    from cream_plugin.loop.run_folder import RunFolder, RunFolderError

    folder = RunFolder(args.run_dir)
    if not folder.is_cream_folder():
        raise RunFolderError(f"{args.run_dir}: not a cream run folder (no cream-run.json)")
    folder.acquire()  # refuses while a run is using the folder
    try:
        removed = folder.clean_leftovers()
        for name in args.stage:
            removed += folder.remove_stage(name)
    finally:
        folder.release()
    for name in removed:
        print(f"removed {name}")
    return 0
