"""Issue 12, item 7: every failure of a ``cream`` command is one line naming the file, row, key
or plugin (``--debug`` shows the traceback); plugin rewarder results are checked."""

from __future__ import annotations

import json
import types
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cream_plugin import hookimpl
from cream_plugin.cli import main
from cream_plugin.errors import RewarderError
from cream_plugin.plugins.interfaces import RewardResult
from cream_plugin.testing import PAIR_BAD, PAIR_GOOD, PAIR_PROMPTS


def run_cli(capsys: Any, *argv: str) -> tuple[int, str]:
    """Exit status and stderr of ``cream ARGV``; the message must be exactly one line."""
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cream {command}: error: "), err
    return lines[0]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rewards_rows(n: int = 3, **extra: Any) -> list[dict[str, Any]]:
    return [{"prompt_id": f"p{k}", "prompt": f"q{k}", "responses": [f"r{j}" for j in range(n)],
             "rewards": [float(j + k) for j in range(n)], **extra} for k in range(2)]


def under_a_file(tmp_path: Path, name: str) -> Path:
    """An output path whose parent folder cannot be created (a file is in the way)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    return blocker / "sub" / name


# -- the CLI's error handling ---------------------------------------------------------------


def test_unexpected_exception_is_one_line_with_a_hint(monkeypatch, capsys, tmp_path) -> None:
    import cream_plugin.commands.pairs as pairs_cmd

    def boom(args: Any) -> int:
        raise TypeError("boom\nsecond line")

    monkeypatch.setattr(pairs_cmd, "run", boom)
    code, err = run_cli(capsys, "pairs", "x.jsonl", "-o", str(tmp_path / "o.jsonl"))
    assert code == 1
    line = one_error_line(err, "pairs")
    assert line == ("cream pairs: error: TypeError: boom second line "
                    "(run with --debug for the traceback)")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(monkeypatch, capsys, tmp_path, where) -> None:
    import cream_plugin.commands.pairs as pairs_cmd

    monkeypatch.setattr(pairs_cmd, "run", lambda args: 1 / 0)
    argv = ["pairs", "x.jsonl", "-o", str(tmp_path / "o.jsonl")]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    code, err = run_cli(capsys, *argv)
    assert code == 1
    assert "Traceback" in err and "ZeroDivisionError" in err


def test_cream_error_with_debug_shows_the_traceback(capsys, tmp_path) -> None:
    code, err = run_cli(capsys, "--debug", "pairs", str(tmp_path / "missing.jsonl"), "-o",
                        str(tmp_path / "o.jsonl"))
    assert code == 1 and "Traceback" in err and "file not found" in err


def test_usage_error_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["pairs"])
    assert info.value.code == 2


# -- config and input files -----------------------------------------------------------------


def test_config_that_is_a_folder(capsys, tmp_path) -> None:
    rewards = write_jsonl(tmp_path / "r.jsonl", rewards_rows())
    code, err = run_cli(capsys, "pairs", str(rewards), "-o", str(tmp_path / "o.jsonl"),
                        "--config", str(tmp_path))
    assert code == 1 and "is a folder" in one_error_line(err, "pairs")


def test_config_that_is_not_utf8(capsys, tmp_path) -> None:
    rewards = write_jsonl(tmp_path / "r.jsonl", rewards_rows())
    config = tmp_path / "c.yaml"
    config.write_bytes(b"seed: 1\n\xff\n")
    code, err = run_cli(capsys, "pairs", str(rewards), "-o", str(tmp_path / "o.jsonl"),
                        "--config", str(config))
    assert code == 1 and "not UTF-8" in one_error_line(err, "pairs")


NOT_UTF8 = b'{"prompt_id": "a", "prompt": "q", "responses": ["x"]}\n{"prompt_id": "b\xff"}\n'


def test_sample_input_not_utf8(capsys, tmp_path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_bytes(NOT_UTF8)
    code, err = run_cli(capsys, "sample", "--model", "tiny-random", "--prompts", str(prompts),
                        "--out", str(tmp_path / "o.jsonl"))
    assert code == 1 and "p.jsonl:2: not UTF-8" in one_error_line(err, "sample")


def test_reward_input_not_utf8(capsys, tmp_path) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_bytes(NOT_UTF8)
    code, err = run_cli(capsys, "reward", str(samples), "-o", str(tmp_path / "o.jsonl"),
                        "--rewarder", "answer-key")
    assert code == 1 and "s.jsonl:2: not UTF-8" in one_error_line(err, "reward")


def test_reward_with_an_unknown_device(capsys, tmp_path) -> None:
    samples = write_jsonl(tmp_path / "s.jsonl", rewards_rows())
    code, err = run_cli(capsys, "reward", str(samples), "-o", str(tmp_path / "o.jsonl"),
                        "--set", "model.device=gpu7")
    assert code == 1 and "model.device: 'gpu7' is not valid" in one_error_line(err, "reward")


def test_sample_with_an_unknown_device(capsys, tmp_path) -> None:
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt_id": "a", "prompt": "q"}])
    code, err = run_cli(capsys, "sample", "--model", "tiny-random", "--prompts", str(prompts),
                        "--out", str(tmp_path / "o.jsonl"), "--device", "gpu7")
    assert code == 1 and "--device: 'gpu7'" in one_error_line(err, "sample")


# -- cream pairs ------------------------------------------------------------------------------


def test_pairs_non_numeric_reward(capsys, tmp_path) -> None:
    rows = rewards_rows()
    rows[1]["rewards"][2] = "high"
    rewards = write_jsonl(tmp_path / "r.jsonl", rows)
    code, err = run_cli(capsys, "pairs", str(rewards), "-o", str(tmp_path / "o.jsonl"))
    line = one_error_line(err, "pairs")
    assert code == 1 and "r.jsonl: row 2 (prompt_id 'p1'): rewards must hold numbers" in line


def test_pairs_infinite_reward(capsys, tmp_path) -> None:
    rewards = tmp_path / "r.jsonl"
    rows = [json.dumps(r) for r in rewards_rows()]
    rows[0] = rows[0].replace('"rewards": [0.0,', '"rewards": [1e400,')
    rewards.write_text("\n".join(rows) + "\n")
    assert json.loads(rows[0])["rewards"][0] == float("inf")  # what json reads
    code, err = run_cli(capsys, "pairs", str(rewards), "-o", str(tmp_path / "o.jsonl"))
    assert code == 1 and "not a finite number" in one_error_line(err, "pairs")


def test_pairs_null_reward_is_unscored(capsys, tmp_path) -> None:
    rows = rewards_rows()
    rows[0]["rewards"][0] = None
    rewards = write_jsonl(tmp_path / "r.jsonl", rows)
    assert main(["pairs", str(rewards), "-o", str(tmp_path / "o.jsonl")]) == 0


def test_pairs_previous_with_shorter_n(capsys, tmp_path) -> None:
    rewards = write_jsonl(tmp_path / "r.jsonl", rewards_rows())
    previous = rewards_rows()
    for row in previous:
        row["rewards"] = row["rewards"][:-1]
    prev = write_jsonl(tmp_path / "prev.jsonl", previous)
    code, err = run_cli(capsys, "pairs", str(rewards), "--previous", str(prev), "-o",
                        str(tmp_path / "o.jsonl"))
    assert code == 1 and "prev.jsonl: row 1 (prompt_id 'p0'): 2 rewards for 3 responses" in \
        one_error_line(err, "pairs")


def test_pairs_previous_with_a_duplicated_prompt_id(capsys, tmp_path) -> None:
    rewards = write_jsonl(tmp_path / "r.jsonl", rewards_rows())
    previous = rewards_rows()
    previous.append(dict(previous[0], rewards=[9.0, 8.0, 7.0]))
    prev = write_jsonl(tmp_path / "prev.jsonl", previous)
    code, err = run_cli(capsys, "pairs", str(rewards), "--previous", str(prev), "-o",
                        str(tmp_path / "o.jsonl"))
    assert code == 1 and "prev.jsonl: row 3: prompt_id 'p0' occurs twice" in \
        one_error_line(err, "pairs")


# -- cream train on bad pairs (refused before any model is loaded) -----------------------------


def pair_rows() -> list[dict[str, Any]]:
    return [{"prompt_id": f"p{i}", "prompt": [{"role": "user", "content": p}],
             "chosen": [{"role": "assistant", "content": PAIR_GOOD[i]}],
             "rejected": [{"role": "assistant", "content": PAIR_BAD[i]}],
             "consistency": 0.8, "ref_chosen_logps": -10.0, "ref_rejected_logps": -12.0}
            for i, p in enumerate(PAIR_PROMPTS)]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda rows: rows[2].update(prompt="plain text prompt", chosen="a", rejected="b"),
     "row 3 (prompt_id 'p2'): field 'prompt' is text but row 1's prompt is chat"),
    (lambda rows: rows[1].pop("chosen"), "row 2 (prompt_id 'p1'): missing field 'chosen'"),
    (lambda rows: rows[3].update(ref_chosen_logps=None),
     "row 4 (prompt_id 'p3'): 'ref_chosen_logps' must be a finite number, got None"),
    (lambda rows: rows[0].update(ref_rejected_logps=float("nan")),
     "row 1 (prompt_id 'p0'): 'ref_rejected_logps' must be a finite number, got nan"),
    (lambda rows: rows[0].update(ref_rejected_logps=float("-inf")),
     "'ref_rejected_logps' must be a finite number, got -inf"),
    (lambda rows: rows[1].pop("ref_chosen_logps"),
     "row 2 (prompt_id 'p1'): 'ref_chosen_logps' is missing but present in row 1"),
])
def test_train_refuses_bad_pairs_naming_row_and_field(capsys, tmp_path, change, expected) -> None:
    rows = pair_rows()
    change(rows)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    code, err = run_cli(capsys, "train", str(pairs), "--model", str(tmp_path / "no-model"),
                        "--output", str(tmp_path / "out"))
    assert code == 1 and expected in one_error_line(err, "train")


def test_train_numeric_string_override_and_non_finite_override(capsys, tmp_path) -> None:
    from cream_plugin.commands.train import build_args, parse_overrides
    from cream_plugin.trainers.cream_trainer import CREAMConfig

    args = build_args(CREAMConfig, str(tmp_path), parse_overrides(["learning_rate=1e-6"]))
    assert args.learning_rate == 1e-6
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    code, err = run_cli(capsys, "train", str(pairs), "--model", "x", "--output",
                        str(tmp_path / "o"), "--set", "beta=.nan")
    assert code == 1 and "--set beta: expected a finite number" in one_error_line(err, "train")


def test_train_on_cpu_without_set_trains(capsys, tmp_path, tiny_model_dir) -> None:
    """TRL's bf16 default used to fail here with '--set: Your setup doesn't support bf16/gpu'."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only defaults")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    out = tmp_path / "trained"
    code, err = run_cli(capsys, "train", str(pairs), "--model", str(tiny_model_dir), "--output",
                        str(out), "--set", "max_length=64")
    assert code == 0, err
    assert (out / "model.safetensors").is_file()
    # When the settings really are the cause, the message names them.
    code, err = run_cli(capsys, "train", str(pairs), "--model", str(tiny_model_dir), "--output",
                        str(out), "--set", "use_cpu=false", "--set", "bf16=true")
    line = one_error_line(err, "train")
    assert code == 1 and "trainer config CREAMConfig with " in line
    assert "use_cpu=False, bf16=True" in line


# -- outputs that cannot be written -----------------------------------------------------------


def test_unwritable_outputs_are_named(capsys, tmp_path) -> None:
    rewards = write_jsonl(tmp_path / "r.jsonl", rewards_rows())
    bad = under_a_file(tmp_path, "o.jsonl")
    code, err = run_cli(capsys, "pairs", str(rewards), "-o", str(bad))
    assert code == 1 and f"--output {bad}: cannot write into" in one_error_line(err, "pairs")

    samples = write_jsonl(tmp_path / "s.jsonl", [
        {"prompt_id": "a", "prompt": "q", "responses": ["x", "y"], "reference": "choice:A"}])
    code, err = run_cli(capsys, "reward", str(samples), "-o", str(bad), "--rewarder",
                        "answer-key")
    assert code == 1 and str(bad) in one_error_line(err, "reward")

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt_id": "a", "prompt": "q"}])
    code, err = run_cli(capsys, "sample", "--model", "tiny-random", "--prompts", str(prompts),
                        "--out", str(bad))
    assert code == 1 and f"--output {bad}" in one_error_line(err, "sample")

    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    code, err = run_cli(capsys, "train", str(pairs), "--model", "tiny-random", "--output",
                        str(bad.parent))
    assert code == 1 and str(bad.parent) in one_error_line(err, "train")


def test_read_only_folder_is_named(capsys, tmp_path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        rewards = write_jsonl(tmp_path / "r.jsonl", rewards_rows())
        code, err = run_cli(capsys, "pairs", str(rewards), "-o", str(folder / "o.jsonl"))
        assert code == 1 and "cannot write into" in one_error_line(err, "pairs")
    finally:
        folder.chmod(0o755)


# -- plugin rewarders: everything score() can do wrong ----------------------------------------


class BadRewarder:
    """A plugin rewarder whose ``score`` misbehaves in the way named by ``mode``."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode

    def score(self, prompts: list[Any], responses: list[list[str]]) -> Any:
        p, n = len(prompts), len(responses[0])
        table = np.arange(p * n, dtype=float).reshape(p, n)
        if self.mode == "raise":
            raise KeyError("the reward server said no")
        if self.mode == "short":
            return RewardResult(table[:-1], Counter())
        if self.mode == "flat":
            result = RewardResult(table, Counter())
            result.rewards = table.ravel()
            return result
        if self.mode == "list":
            return table.tolist()
        if self.mode == "inf":
            table[1, 0] = np.inf
        if self.mode == "nan":
            table[1, 0] = np.nan
        if self.mode == "text":
            result = RewardResult(table, Counter())
            result.rewards = [["a"] * n] * p
            return result
        return RewardResult(table, Counter())


@pytest.fixture
def bad_plugin(fresh_plugins):
    from cream_plugin.plugins.manager import get_plugin_manager
    from cream_plugin.plugins.registry import clear_cache

    module = types.ModuleType("cream_bad_rewarder_plugin")

    @hookimpl
    def register_rewarders(register: Any) -> None:
        register("bad", BadRewarder)

    module.register_rewarders = register_rewarders  # type: ignore[attr-defined]
    get_plugin_manager().add_plugin(module, "bad-plugin", "bad-dist 0.1")
    clear_cache()
    yield
    clear_cache()


PROMPTS = ["q0", "q1", "q2"]
RESPONSES = [["a", "b"], ["c", "d"], ["e", "f"]]


@pytest.mark.parametrize(("mode", "expected"), [
    ("raise", "score() raised KeyError"),
    ("short", "shape (2, 2); expected (3, 2)"),
    ("flat", "shape (6,); expected (3, 2)"),
    ("list", "score() returned list; expected a cream_plugin.plugins.interfaces.RewardResult"),
    ("inf", "1 infinite reward(s), first at prompt 1, response 0"),
    ("text", "rewards are not a numeric table"),
])
def test_score_rewarder_names_the_plugin(bad_plugin, mode, expected) -> None:
    from cream_plugin.rewarders import build_rewarder, score_rewarder

    rewarder = build_rewarder("bad", options={"mode": mode})
    with pytest.raises(RewarderError) as info:
        score_rewarder(rewarder, PROMPTS, RESPONSES)
    message = str(info.value)
    assert message.startswith("rewarder 'bad' (plugin 'bad-plugin', bad-dist 0.1): ")
    assert expected in message


def test_score_rewarder_keeps_nan_as_unscored(bad_plugin) -> None:
    from cream_plugin.rewarders import build_rewarder, score_rewarder

    result = score_rewarder(build_rewarder("bad", options={"mode": "nan"}), PROMPTS, RESPONSES)
    assert np.isnan(result.rewards[1, 0]) and result.rewards.shape == (3, 2)


def test_score_rewarder_names_the_plugin_of_a_registry_built_rewarder(bad_plugin) -> None:
    """The pipeline builds rewarders with cream_plugin.plugins.registry.build: the plugin is
    named."""
    from cream_plugin.plugins.registry import build
    from cream_plugin.rewarders import score_rewarder

    with pytest.raises(RewarderError, match=r"^rewarder 'bad' \(plugin 'bad-plugin', bad-dist"):
        score_rewarder(build("rewarder", "bad", {}, {"mode": "raise"}), PROMPTS, RESPONSES)


def test_score_rewarder_without_the_registry_names_the_class() -> None:
    from cream_plugin.rewarders import score_rewarder

    with pytest.raises(RewarderError, match=r"BadRewarder.*score\(\) raised KeyError"):
        score_rewarder(BadRewarder("raise"), PROMPTS, RESPONSES)


def test_cream_reward_with_a_failing_plugin_is_one_line(bad_plugin, capsys, tmp_path) -> None:
    samples = write_jsonl(tmp_path / "s.jsonl", [
        {"prompt_id": f"p{k}", "prompt": p, "responses": r}
        for k, (p, r) in enumerate(zip(PROMPTS, RESPONSES, strict=True))])
    out = tmp_path / "o.jsonl"
    code, err = run_cli(capsys, "reward", str(samples), "-o", str(out), "--rewarder", "bad",
                        "--option", "mode=short")
    line = one_error_line(err, "reward")
    assert code == 1 and "plugin 'bad-plugin'" in line and "shape (2, 2)" in line
    assert not out.exists()


def test_reward_cache_that_is_not_a_cache(capsys, tmp_path) -> None:
    samples = write_jsonl(tmp_path / "s.jsonl", [
        {"prompt_id": "a", "prompt": "q", "responses": ["x", "y"], "reference": "choice:A"}])
    cache = write_jsonl(tmp_path / "cache.jsonl", [{"model": "m", "prompt": "p"}, [1, 2]])
    code, err = run_cli(capsys, "reward", str(samples), "-o", str(tmp_path / "o.jsonl"),
                        "--rewarder", "answer-key", "--cache", str(cache))
    assert code == 1 and "cache.jsonl" in one_error_line(err, "reward")
    code, err = run_cli(capsys, "reward", str(samples), "-o", str(tmp_path / "o.jsonl"),
                        "--rewarder", "answer-key", "--cache", str(under_a_file(tmp_path, "c")))
    assert code == 1 and "--cache" in one_error_line(err, "reward")


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path) -> None:
    """`cream plugins | head -1`: the pipe closes while cream still writes; cream exits 0 with
    nothing on stderr (it used to print a BrokenPipeError)."""
    import subprocess
    import sys

    script = (f"{sys.executable} -m cream_plugin.cli plugins | head -1 > /dev/null; "
              "exit ${PIPESTATUS[0]}")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Broken pipe" not in done.stderr and "Traceback" not in done.stderr, done.stderr
