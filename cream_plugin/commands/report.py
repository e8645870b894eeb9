"""``cream report RUN_DIR``: benchmark, consistency and timing tables plus plots as Markdown."""

from __future__ import annotations

import argparse

from cream_plugin.commands import add_output_option

HELP = "Write RUN_DIR/report.md (tables and plots) from a run's results, consistency and timings."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run's output folder")
    add_output_option(parser, "report path (default: RUN_DIR/report.md)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cream_plugin.errors import DataError
    from cream_plugin.report.markdown import write_report

    folder = Path(args.run_dir)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: is a file, not a folder; pass the run folder `cream run` "
                        "wrote (its --output)")
    path = write_report(folder, args.output)
    print(path)
    return 0
