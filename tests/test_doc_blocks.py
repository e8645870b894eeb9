"""Every fenced code block in README.md and docs/*.md is run (or checked) by a test.

The marker convention, on the line(s) just before a block's opening fence:

- no marker: the block runs in the fast suite (``test_doc_block_runs[<file>:<line>]``);
- ``<!-- test: slow -->``: it runs in the slow suite (it needs SmolLM2 or a finished run);
- ``<!-- test: NAME -->`` (any other NAME): a dedicated test runs it, and some file in tests/
  must say ``doc_blocks("NAME")`` (tests/test_cards.py does for ``trl-script``,
  ``read-artifacts``);
- a visible paragraph right before the fence starting ``*Not run by the`` and ending ``*``
  (``*Not run by the tests: it needs several GPUs.*``): not run; the paragraph is the reason
  the reader sees. Nothing else skips a block, so a new unmarked block is run.

How each language runs, in a fresh folder (the current directory): ``python`` with exec, in a
scope that defines the names fragments use (``model``, ``tokenizer``, ``pairs``, ``prompts``,
``responses``, ``references``, ``rewards_now``, ``rewards_prev``, ``C``, ``num_tokens``: the
tiny in-process model and small data); ``bash``/``sh`` with ``bash -euo pipefail`` and this
venv's scripts first on PATH; ``yaml`` as a run-config fragment through ``load_config``;
``json`` and ``toml`` parsed; ``mermaid`` (a diagram) must start with a diagram type. Any other
language fails until a runner or a marker is added. Placeholders are replaced before running:
``/path/to/data`` by the local data folder, ``/path/to/checkpoint`` by
``runs/demo/cream/M3``. Slow blocks run where ``runs/demo`` holds a finished run of the demo's
methods and iterations (cream, cream-no-rc, 2 iterations) on the tiny model: the layout
``make demo`` leaves, in a minute instead of seven.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w+-]*)\s*$")
MARKER = re.compile(r"^<!-- test: ([\w-]+) -->$")
SKIP_START, SKIP_END = "*Not run by the", "*"
RUNNERS = ("python", "bash", "sh", "yaml", "json", "toml", "mermaid")
CHECKPOINT = "runs/demo/cream/M3"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker: str | None  # None (fast), "slow", a test name, or "skip"
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, each with its marker (see the module docstring)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        assert end is not None, f"{path}:{i + 1}: code block never closed"
        marker, reason = None, ""
        named = MARKER.match(lines[i - 1]) if i else None
        if named:
            marker = named.group(1)
        else:
            start = i
            while start > 0 and lines[start - 1].strip() and not FENCE.match(lines[start - 1]):
                start -= 1
            paragraph = " ".join(x.strip() for x in lines[start:i])
            if paragraph.startswith(SKIP_START) and paragraph.endswith(SKIP_END) and i > start:
                marker, reason = "skip", paragraph.strip("*")
        blocks.append(Block(path, i + 1, match.group(1) or "", "\n".join(lines[i + 1:end]) + "\n",
                            marker, reason))
        i = end + 1
    return blocks


ALL = [b for path in DOCS for b in read_blocks(path)]
FAST = [b for b in ALL if b.marker is None]
SLOW = [b for b in ALL if b.marker == "slow"]


def test_every_block_is_run_or_says_why_not() -> None:
    assert len(ALL) > 20, "the parser found too few blocks"
    tests_text = "\n".join(p.read_text() for p in (ROOT / "tests").glob("*.py"))
    for block in ALL:
        if block.marker == "skip":
            assert len(block.reason) > len("Not run by the tests: ") + 10, (
                f"{block.id}: a skipped block needs a visible reason")
        elif block.marker not in (None, "slow"):
            assert f'doc_blocks("{block.marker}")' in tests_text, (
                f"{block.id}: marked test: {block.marker}, but no test runs doc_blocks(...)")
        else:
            assert block.language in RUNNERS, (
                f"{block.id}: no runner for ```{block.language}; add one here or mark the block")


def test_marker_parser_reads_all_three_forms(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("text\n\n```bash\necho 1\n```\n<!-- test: slow -->\n```python\nx = 1\n```\n"
                   "*Not run by the tests: it needs a GPU\ncluster.*\n```bash\nnvidia-smi\n```\n")
    fast, slow, skipped = read_blocks(doc)
    assert (fast.marker, fast.line, fast.code) == (None, 3, "echo 1\n")
    assert (slow.marker, slow.language) == ("slow", "python")
    assert skipped.marker == "skip" and skipped.reason.endswith("it needs a GPU cluster.")


# -- running ---------------------------------------------------------------------------------


def substitute(code: str, data_dir: Path) -> str:
    return code.replace("/path/to/data", str(data_dir)).replace("/path/to/checkpoint", CHECKPOINT)


def fragment_scope() -> dict[str, Any]:
    """The names the documentation's Python fragments assume (see the module docstring)."""
    import numpy as np
    from datasets import Dataset

    from cream_plugin.testing import (
        PAIR_BAD,
        PAIR_GOOD,
        PAIR_PROMPTS,
        build_tiny_model,
        build_tiny_tokenizer,
    )

    prompts = [[{"role": "user", "content": p}] for p in PAIR_PROMPTS]
    responses = [[good, bad] for good, bad in zip(PAIR_GOOD, PAIR_BAD, strict=True)]
    rng = np.random.default_rng(0)
    tokenizer = build_tiny_tokenizer()
    pairs = Dataset.from_list([
        {"prompt": p, "chosen": [{"role": "assistant", "content": g}],
         "rejected": [{"role": "assistant", "content": b}], "consistency": 0.8}
        for p, g, b in zip(prompts, PAIR_GOOD, PAIR_BAD, strict=True)])
    return {
        "model": build_tiny_model(tokenizer), "tokenizer": tokenizer, "pairs": pairs,
        "prompts": prompts, "responses": responses, "references": ["5", "B", None, "B"],
        "rewards_now": rng.normal(size=(4, 2)), "rewards_prev": rng.normal(size=(4, 2)),
        "C": np.array([0.2, 0.6, 0.9, 1.0]), "num_tokens": np.array([[3, 5]] * 4),
        "__name__": "__doc_block__",
    }


def shell_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(CREAM_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    return env


def run_block(block: Block, data_dir: Path, workdir: Path) -> None:
    code = substitute(block.code, data_dir)
    lang = block.language
    if lang == "python":
        old = Path.cwd()
        os.chdir(workdir)
        try:
            exec(compile(code, block.id, "exec"), fragment_scope())
        finally:
            os.chdir(old)
    elif lang in ("bash", "sh"):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=workdir,
                              env=shell_env(data_dir), capture_output=True, text=True,
                              timeout=1200)
        assert done.returncode == 0, f"{block.id}: exit {done.returncode}\n{code}\n" + (
            done.stdout[-2000:] + done.stderr[-4000:])
    elif lang == "yaml":
        from cream_plugin.config import load_config

        fragment = workdir / "fragment.yaml"
        fragment.write_text(code)
        load_config(fragment)
    elif lang == "json":
        json.loads(code)
    elif lang == "toml":
        tomllib.loads(code)
    elif lang == "mermaid":
        assert code.split()[0] in ("graph", "flowchart", "sequenceDiagram", "stateDiagram-v2")
    else:  # pragma: no cover - test_every_block_is_run_or_says_why_not names it first
        pytest.fail(f"{block.id}: no runner for ```{lang}")


@pytest.mark.parametrize("block", FAST, ids=[b.id for b in FAST])
def test_doc_block_runs(block: Block, data_dir: Path, tmp_path: Path) -> None:
    run_block(block, data_dir, tmp_path)


@pytest.fixture(scope="module")
def demo_workdir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose runs/demo is a finished run of the demo's methods and iterations on the
    tiny model (the smoke preset's sizes): what the docs' "after make demo" blocks read."""
    work = tmp_path_factory.mktemp("demo-workdir")
    command = [sys.executable, "-m", "cream_plugin.cli", "run", "--preset", "smoke",
               "--method", "cream,cream-no-rc", "--set", "iterations=2", "-o", "runs/demo"]
    done = subprocess.run(command, cwd=work, env=shell_env(data_dir), capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    return work


@pytest.mark.slow
@pytest.mark.parametrize("block", SLOW, ids=[b.id for b in SLOW])
def test_slow_doc_block_runs(block: Block, data_dir: Path, demo_workdir: Path) -> None:
    run_block(block, data_dir, demo_workdir)


@pytest.mark.slow
def test_demo_run_keeps_each_final_model_and_the_docs_read_it(
    demo_workdir: Path, data_dir: Path
) -> None:
    """By default every method's final model stays with its card; the read-artifacts blocks of
    docs/integration.md run on it as written."""
    run = demo_workdir / "runs/demo"
    for method in ("cream", "cream-no-rc"):
        assert (run / method / "M3" / "model.safetensors").is_file()
        assert (run / method / "M3" / "README.md").is_file()
        assert not (run / method / "M2").exists()  # not named by keep_checkpoints
    from tests.test_cards import doc_blocks

    block = Block(ROOT / "docs/integration.md", 0, "python", doc_blocks("read-artifacts"), None)
    scope_dir = demo_workdir / "read-artifacts"
    scope_dir.mkdir(exist_ok=True)
    shutil.copytree(run, scope_dir / "runs/demo", dirs_exist_ok=True)
    run_block(block, data_dir, scope_dir)
