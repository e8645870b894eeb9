"""The shape of the code base: small modules (one job each), stages that never touch the disk
protocol themselves, and the CLI sub-commands built on the stages' functions."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = [
    path
    for folder in ("cream_plugin", "rewarders", "evaluators")
    for path in (REPO / folder).rglob("*.py")
    # a worktree's untracked links cream_plugin/{rewarders,evaluators} are not more sources
    if not (folder == "cream_plugin" and path.relative_to(REPO).parts[1] in
            ("rewarders", "evaluators"))
]


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in SOURCES
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"


def test_stages_leave_the_resume_protocol_to_the_runner() -> None:
    """No stage module writes artifacts, manifests or injects faults: only the runner does."""
    forbidden = {"write_rows", "write_folder", "fault_point", "is_complete", "barrier"}
    for path in (REPO / "cream_plugin" / "stages").glob("*.py"):
        if path.name == "runner.py":
            continue
        called = {
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call)
        }
        assert not called & forbidden, f"{path.name} calls {sorted(called & forbidden)}"


def test_cli_commands_share_the_stage_functions() -> None:
    """`cream sample` draws through the sample stage's function, `cream reward` builds through
    the one component builder, and every KEY=VALUE goes through the config's parser."""
    commands = REPO / "cream_plugin" / "commands"
    assert "sample_responses" in (commands / "sample.py").read_text()
    assert "parse_key_values" in (commands / "reward.py").read_text()
    assert "parse_key_values" in (commands / "train.py").read_text()
    for path in commands.glob("*.py"):
        text = path.read_text()
        assert "yaml.safe_load(raw" not in text, f"{path.name} parses KEY=VALUE itself"
        assert "mkstemp" not in text, f"{path.name} writes files atomically itself"
