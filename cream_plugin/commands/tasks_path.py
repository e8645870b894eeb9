"""``cream tasks-path``: the folder(s) to pass to ``lm_eval --include_path``."""

from __future__ import annotations

import argparse

HELP = "Print the lm-eval task folder(s) of all evaluators, for lm_eval --include_path."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sep", default=",", help="separator between folders (default ',')")


def run(args: argparse.Namespace) -> int:
    from cream_plugin.registry import task_paths

    print(args.sep.join(task_paths()))
    return 0
