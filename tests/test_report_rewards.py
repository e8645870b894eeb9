"""The report's Rewards and pairs section, from manifests alone (older run folders included)."""

from __future__ import annotations

import json
from pathlib import Path

from cream_plugin.report.rewards import reward_rows, rewards_section


def write(run_dir: Path, name: str, manifest: dict) -> None:
    path = run_dir / f"{name}.manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kind": "rows", **manifest}))


def test_generate_and_parse_judge_without_pairs_is_called_out(tmp_path) -> None:
    """A folder from before the pairs count (only prompts / skipped): a judge that never
    answered is flagged, its unparsed verdicts shown."""
    write(tmp_path, "shared/iter1/rewards-judge-M1",
          {"step": "reward", "digest": "d1", "method": "shared", "iteration": 1,
           "counts": {"judgements": 20, "unparsed_judgements": 20, "scored": 0,
                      "prompts_all_tied": 0}})
    write(tmp_path, "srlm/iter1/pairs", {"step": "pairs", "method": "srlm", "iteration": 1,
                                         "inputs": {"rewards": "d1"}, "prompts": 5,
                                         "skipped": 5})
    write(tmp_path, "srlm/iter2/pairs", {"step": "pairs", "method": "srlm", "iteration": 2,
                                         "inputs": {"logps": "x"}, "prompts": 5,
                                         "pairs": 3, "skipped": 2})
    rows = reward_rows(tmp_path)
    assert [(r["iteration"], r["pairs"], r["no_pairs"]) for r in rows] == [
        (1, 0, True), (2, 3, False)]
    section = rewards_section(tmp_path)
    assert section is not None
    assert "**No pairs: srlm iteration 1** formed no preference pair from 5 prompts, so M2 is a " \
           "copy of M1" in section
    assert "iteration 2**" not in section
    assert "| srlm | 1 | judge-M1 | 0 | 20 / 20 | - | 0 | 0 / 5 |" in section
    assert "| srlm | 2 | implicit | - | - | - | - | 3 / 5 |" in section


def test_no_pairs_stage_no_section(tmp_path) -> None:
    write(tmp_path, "M1", {"step": "sft"})
    assert rewards_section(tmp_path) is None


def test_the_report_opens_with_the_bottom_line_and_no_pairs_right_after_it() -> None:
    from cream_plugin.report.markdown import place_rewards

    instruments = ("## Bottom line\n\nNothing improved.\n\n## Glossary\n\n- **C**: ...\n\n"
                   "## Summary\n\n- a finding\n\n## Pool accuracy\n\n| t |")
    rewards = "## Rewards and pairs\n\n- **No pairs: srlm iteration 1** formed none\n\n| table |"
    watch = ["- **No pairs: srlm iteration 1** formed none"]
    text = place_rewards(instruments, rewards, watch)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Bottom line", "## Glossary", "## Summary", "## Rewards and pairs",
                        "## Pool accuracy"]
    assert text.index("**No pairs: srlm iteration 1**") < text.index("## Glossary")
