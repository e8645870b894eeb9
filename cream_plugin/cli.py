"""The ``cream`` command: one sub-command per module in ``cream_plugin.commands``.

A command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and
imports heavy libraries inside ``run`` so ``cream --help`` stays fast.

Every failure ends as one line on stderr, ``cream <command>: error: <message>``, and a non-zero
exit status: 1 for a :class:`CreamError` (bad input, named) and for an unexpected exception
(its type and message, plus a hint), 2 for a usage error (argparse), 130 for Ctrl-C and 143 for
SIGTERM (handled like Ctrl-C: the same clean-up, the run folder's lock released). An
operating-system error names its path and the fix (a full disk, ``ulimit -f``, permissions).
``--debug`` (before or after the command name) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cream_plugin.commands import HIDDEN_ALIASES
from cream_plugin.errors import CreamError, Terminated, describe_os_error

COMMANDS: tuple[str, ...] = (
    "run", "sample", "reward", "pairs", "train", "eval", "report", "clean", "push", "config",
    "plugins", "tasks-path", "model-path",
)


class HelpFormatter(argparse.HelpFormatter):
    """Leaves the old spellings (``HIDDEN_ALIASES``, e.g. ``--out``) out of ``--help``: they are
    still accepted, but the help shows one name per concept across sub-commands."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = [o for o in action.option_strings if o not in HIDDEN_ALIASES]
        if shown != action.option_strings:
            action = copy.copy(action)
            action.option_strings = shown
        return super()._format_action_invocation(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cream", description="Consistency-regularised self-rewarding language models."
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of a one-line message")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error instead of a one-line message")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"cream_plugin.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("cream_plugin.commands"):
                continue  # not built yet
            raise
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common],
                             formatter_class=HelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    try:
        with sigterm_as_interrupt():
            return int(args._run(args) or 0)
    except KeyboardInterrupt as exc:
        if debug:
            traceback.print_exc()
        terminated = isinstance(exc, Terminated)
        print(f"cream {args.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}",
              file=sys.stderr)
        return 143 if terminated else 130
    except CreamError as exc:
        if debug:
            traceback.print_exc()
        _error(args.command, one_line(str(exc)))
        return 1
    except BrokenPipeError:
        # The reader of cream's output left early (`cream plugins | head`): nothing failed.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.errno is None and exc.filename is None:  # e.g. a library's ConnectionError
            return _unexpected(args.command, exc, debug)
        if debug:
            traceback.print_exc()
        _error(args.command, one_line(describe_os_error(exc)))
        return 1
    except Exception as exc:  # the last line of defence: no bare traceback
        return _unexpected(args.command, exc, debug)


def _unexpected(command: str, exc: Exception, debug: bool) -> int:
    if debug:
        traceback.print_exc()
        _error(command, f"{type(exc).__name__}: {one_line(str(exc))}")
    else:
        _error(command, f"{type(exc).__name__}: {one_line(str(exc))} "
               "(run with --debug for the traceback)")
    return 1


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` (a KeyboardInterrupt) while a command runs, so a
    terminated run cleans up exactly as an interrupted one does. Main thread only."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def one_line(message: str) -> str:
    """A message on one line (library messages such as YAML's span several)."""
    return " ".join(message.split()) or "(no message)"


def _error(command: str, message: str) -> None:
    print(f"cream {command}: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
