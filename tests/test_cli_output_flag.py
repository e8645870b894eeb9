"""One flag name per concept: every command's output is -o/--output; the old --out still works
but is not shown in --help."""

from __future__ import annotations

import pytest

from cream_plugin.cli import build_parser

WRITERS = ("run", "sample", "reward", "pairs", "train", "report")


@pytest.mark.parametrize("command", WRITERS)
def test_help_shows_one_output_flag(command: str) -> None:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    text = sub.format_help()
    assert "-o OUTPUT, --output OUTPUT" in text
    assert "--out " not in text and "--out," not in text


def test_old_out_spelling_is_still_accepted() -> None:
    parser = build_parser()
    args = parser.parse_args(["report", "runs/x", "--out", "r.md"])
    assert args.output == "r.md"
    args = parser.parse_args(["sample", "--model", "m", "--prompts", "p.jsonl", "-o", "s.jsonl"])
    assert args.output == "s.jsonl"
