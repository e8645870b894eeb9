"""The ``cream`` command: one sub-command per module in ``cream_plugin.commands``.

A command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and
imports heavy libraries inside ``run`` so ``cream --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cream_plugin.errors import CreamError

COMMANDS: tuple[str, ...] = (
    "run", "sample", "reward", "pairs", "train", "eval", "report", "clean", "push", "plugins",
    "tasks-path",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cream", description="Consistency-regularised self-rewarding language models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"cream_plugin.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("cream_plugin.commands"):
                continue  # not built yet
            raise
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CreamError as exc:
        print(f"cream {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
