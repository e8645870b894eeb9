"""Sub-commands of the ``cream`` CLI, one module each."""

from __future__ import annotations

import argparse

HIDDEN_ALIASES = frozenset({"--out"})
"""Old option spellings still accepted but left out of ``--help`` (cream_plugin.cli's formatter)."""


def add_output_option(
    parser: argparse.ArgumentParser, help: str, *, required: bool = False
) -> None:
    """Every command names its output ``-o/--output``; the old ``--out`` still works, hidden."""
    parser.add_argument("-o", "--output", "--out", dest="output", required=required, help=help)
