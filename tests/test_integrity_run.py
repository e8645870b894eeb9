"""Integrity II (issue 26): the last ways a run could lose a user's files or finish wrong without
a word. Each test reproduces one case of the issue and failed on the code before its fix."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_runner import Checkpoint, FakeContext

from cream_plugin.cli import build_parser, main
from cream_plugin.config import explain, load_config
from cream_plugin.errors import ConfigError, CreamError, DataError, ModelLoadError
from cream_plugin.loop import files
from cream_plugin.loop.artifacts import Artifact
from cream_plugin.loop.pipeline import Pipeline
from cream_plugin.loop.run_folder import LOCK, RunFolder, RunFolderError
from cream_plugin.loop.runner import Runner


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def users_outputs(folder: Path) -> None:
    """A folder a user filled with files at names cream also writes (case 1 of the issue)."""
    (folder / "plots").mkdir(parents=True)
    (folder / "plots" / "my_figure.png").write_bytes(b"png")
    (folder / "tb").mkdir()
    (folder / "tb" / "events.out").write_bytes(b"events")
    (folder / "M1").mkdir()
    (folder / "M1" / "pytorch_model.bin").write_bytes(b"weights")
    for name in ("config.json", "report.md", "instruments.json"):
        (folder / name).write_text("mine")


def smoke(output: Path, *extra: str) -> list[str]:
    return ["run", "--preset", "smoke", "--output", str(output), *extra]


# -- 1. --adopt-dir and --fresh ----------------------------------------------------------------
def test_adopt_dir_refuses_files_at_names_cream_writes(tmp_path, data_dir, capsys) -> None:
    users_outputs(tmp_path)
    before = tree(tmp_path)
    argv = smoke(tmp_path, "--adopt-dir", "--set", f"data.data_dir={data_dir}")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--adopt-dir" in err
    for name in ("M1", "config.json", "instruments.json", "plots", "report.md", "tb"):
        assert name in err
    assert tree(tmp_path) == before and not (tmp_path / "cream-run.json").exists()


def test_adopt_dir_still_takes_a_folder_without_cream_names(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    RunFolder(tmp_path).claim(adopt=True, methods=["cream"])
    assert (tmp_path / "cream-run.json").is_file()
    (tmp_path / "cream").mkdir()  # once adopted, cream's own folder names are cream's


def test_fresh_deletes_only_what_manifests_name(tmp_path) -> None:
    folder = RunFolder(tmp_path)
    folder.claim()
    Artifact(tmp_path, "M1", "c").write_folder(
        lambda f: (f / "model.safetensors").write_bytes(b"0"))
    (tmp_path / "tb" / "M1").mkdir(parents=True)
    (tmp_path / "tb" / "M1" / "events.out.tfevents.1").write_bytes(b"cream's")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "scores.png").write_bytes(b"cream's")
    (tmp_path / "report.md").write_text("cream's")
    # the user's files, inside the folders cream writes to
    (tmp_path / "plots" / "my_figure.png").write_bytes(b"mine")
    (tmp_path / "tb" / "events.out").write_bytes(b"mine")
    (tmp_path / "M1" / "notes.txt").write_text("mine")
    removed = folder.wipe()
    assert {"M1/model.safetensors", "tb/M1", "plots/scores.png", "report.md"} <= set(removed)
    assert tree(tmp_path) == {
        "M1/notes.txt": b"mine", "cream-run.json": (tmp_path / "cream-run.json").read_bytes(),
        "plots/my_figure.png": b"mine", "tb/events.out": b"mine"}


# -- 2. preflight checks everything a run loads --------------------------------------------------
def finished_looking_run(folder: Path) -> dict[str, bytes]:
    RunFolder(folder).claim()
    Artifact(folder, "prompts", "c").write_rows([{"a": 1}])
    Artifact(folder, "M1", "c").write_folder(lambda f: (f / "model.safetensors").write_bytes(b"0"))
    (folder / "results.jsonl").write_text("{}\n")
    return tree(folder)


def test_missing_model_fails_before_fresh_deletes_anything(tmp_path, data_dir, capsys) -> None:
    before = finished_looking_run(tmp_path)
    argv = smoke(tmp_path, "--fresh", "--set", "model.name=/nonexistent",
                 "--set", f"data.data_dir={data_dir}")
    assert main(argv) == 1
    assert "/nonexistent does not exist" in capsys.readouterr().err
    assert tree(tmp_path) == before


def copy_data(data_dir: Path, into: Path) -> Path:
    shutil.copytree(data_dir, into)
    return into


def test_empty_seed_sft_file_is_named_before_the_folder_is_touched(tmp_path, data_dir) -> None:
    data = copy_data(data_dir, tmp_path / "data")
    (data / "seed_sft" / "train.jsonl").write_text("")
    config = load_config(overrides=["model.name=tiny-random", f"data.data_dir={data}",
                                    f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(DataError, match=r"seed_sft/train\.jsonl: no rows"):
        Pipeline(config)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", ["word " * 3000, "x" * 2_000_000],
                         ids=["3000 words", "2 MB"])
def test_prompts_too_long_for_the_model_are_refused_in_preflight(tmp_path, data_dir,
                                                                 content) -> None:
    data = copy_data(data_dir, tmp_path / "data")
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"{i} {content}"},
                                         {"role": "assistant", "content": "ok"}]}
            for i in range(4)]
    (data / "seed_sft" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = load_config(overrides=[
        "model.name=tiny-random", f"data.data_dir={data}", "data.prompt_sources=[seed_sft]",
        "data.prompts_per_iteration=2", "iterations=1", f"output_dir={tmp_path / 'run'}"])
    started = time.perf_counter()
    with pytest.raises(DataError, match=r"prompt seed_sft/r[0-9] .*model's context of 1024"):
        Pipeline(config)
    assert time.perf_counter() - started < 120  # refused, not sampled (generous: 2 shared CPUs)
    assert not (tmp_path / "run").exists()


def test_sampler_refuses_a_prompt_longer_than_the_context(tiny_model, tiny_tokenizer) -> None:
    from cream_plugin.forward.sampling import HFSampler

    sampler = HFSampler(tiny_model, tiny_tokenizer, max_new_tokens=8, progress=False)
    with pytest.raises(DataError, match=r"prompt 2 of 2: [0-9]+ tokens .*context of 1024"):
        sampler.generate(["hello", "word " * 1200], 1, seed=0)


@pytest.mark.parametrize("override", ["seed=100000000000000000000000",
                                      "seeds=[1, 100000000000000000000000]", "seed=4294967296"])
def test_huge_seeds_are_refused_in_validation(override) -> None:
    with pytest.raises(ConfigError,
                       match=r"seeds?(\[1\])?: .*out of range \(must be <= 4294967295"):
        load_config(overrides=[override])


# -- 3. a damaged checkpoint ---------------------------------------------------------------------
def test_reused_checkpoint_is_verified_against_its_manifest(tmp_path) -> None:
    ctx = FakeContext(tmp_path)
    Runner(ctx).run(Checkpoint("M1", "M0"))
    weights = tmp_path / "M1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5])
    files.SHA256_MEMO.clear()  # a new process, as a rerun of a finished run is
    runner = Runner(ctx)
    with pytest.raises(DataError, match=r"M1/model\.safetensors: 5 bytes, its manifest says"):
        runner.run(Checkpoint("M1", "M0"))
    assert runner.reused == []


@pytest.mark.parametrize("dry_run", [True, False])
def test_push_refuses_a_damaged_checkpoint(tiny_run_dir, capsys, dry_run) -> None:
    weights = tiny_run_dir / "M1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    argv = ["push", str(tiny_run_dir), "--repo-id", "someone/run", "--what", "checkpoints"]
    assert main(argv + (["--dry-run"] if dry_run else [])) == 1
    err = capsys.readouterr().err
    assert "M1/model.safetensors: 100 bytes, its manifest says" in err


def test_push_refuses_an_edited_pairs_file(tiny_run_dir, capsys) -> None:
    pairs = tiny_run_dir / "cream" / "iter1" / "pairs.jsonl"
    text = pairs.read_text()
    pairs.write_text(text.replace('"', "'", 1)[: len(text)])  # same size, other bytes
    files.SHA256_MEMO.clear()
    argv = ["push", str(tiny_run_dir), "--repo-id", "someone/run", "--what", "pairs", "--dry-run"]
    assert main(argv) == 1
    assert "pairs.jsonl: sha256 differs from its manifest" in capsys.readouterr().err


# -- 4. empty values -----------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--output", "--method", "--seeds"])
@pytest.mark.parametrize("value", ["", " ", ","])
def test_empty_flag_values_are_errors(tmp_path, monkeypatch, capsys, flag, value) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--preset", "smoke", flag, value]) == 1
    assert f"{flag}: empty value" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# -- 5. numbers in trainer settings --------------------------------------------------------------
def test_scientific_notation_in_a_trainers_own_setting() -> None:
    from cream_plugin.loop.preflight import check_trainer_args
    from cream_plugin.loop.stages.train import trainer_arguments
    from cream_plugin.plugins.methods import resolve_methods
    from cream_plugin.plugins.registry import get_trainer

    config = load_config(overrides=["methods=[scir]", "training.consistency_weight=2e-1",
                                    "training.weight_decay=1e-2"])
    assert config.training.trainer_args["consistency_weight"] == "2e-1"  # YAML 1.1 reads a str
    check_trainer_args(config, resolve_methods(["scir"]))
    cls = get_trainer("scir")[1]
    built = trainer_arguments(cls, {"output_dir": "unused", "use_cpu": True,
                                    **config.training.trainer_args})
    assert built.consistency_weight == pytest.approx(0.2) and built.weight_decay == 0.01
    bad = load_config(overrides=["methods=[scir]", "training.consistency_weight=1e400"])
    with pytest.raises(ConfigError, match="consistency_weight: expected a finite number"):
        check_trainer_args(bad, resolve_methods(["scir"]))


# -- 7. smaller ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(tmp_path, data_dir) -> None:
    env = dict(os.environ, CREAM_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "cream_plugin.cli", *smoke(run)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (run / LOCK).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (run / LOCK).exists(), "the run never took its lock"
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert "cream run: terminated (SIGTERM)" in err, err[-2000:]
    assert "Traceback" not in err
    assert not (run / LOCK).exists()  # released: the next run resumes without a by-hand step


def test_sigterm_handler_raises_terminated_and_is_removed_after() -> None:
    from cream_plugin.cli import sigterm_as_interrupt
    from cream_plugin.errors import Terminated

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == previous


def test_break_lock_takes_over_another_hosts_lock(tmp_path) -> None:
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": "node-7", "started": "t"}))
    with pytest.raises(RunFolderError, match=r"on node-7.*--break-lock"):
        RunFolder(tmp_path).acquire()
    RunFolder(tmp_path).acquire(break_lock=True)
    assert json.loads((tmp_path / LOCK).read_text())["host"] == socket.gethostname()
    assert build_parser().parse_args(["run", "--break-lock"]).break_lock is True


def test_empty_lock_is_not_taken_as_stale(tmp_path, monkeypatch) -> None:
    import cream_plugin.loop.run_folder as run_folder

    monkeypatch.setattr(run_folder, "LOCK_WAIT_S", 0.3)
    (tmp_path / LOCK).write_text("")
    with pytest.raises(RunFolderError, match=r"cream\.lock: empty or unreadable.*--break-lock"):
        RunFolder(tmp_path).acquire()
    assert (tmp_path / LOCK).read_text() == ""


def test_half_written_lock_is_read_again_until_complete(tmp_path) -> None:
    """The race: run A has created the lock (O_EXCL) but not yet written it when run B looks."""
    lock = tmp_path / LOCK
    lock.write_text('{"pid": ')

    def finish_writing() -> None:
        time.sleep(0.3)
        lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                    "started": "now"}))

    writer = threading.Thread(target=finish_writing)
    writer.start()
    with pytest.raises(RunFolderError, match=rf"in use by another cream run \(pid {os.getpid()}"):
        RunFolder(tmp_path).acquire()
    writer.join()


def test_duplicate_yaml_keys_are_an_error_naming_key_and_line(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\ntraining:\n  beta: 0.1\n  lr: 1\n  beta: 0.5\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'beta' on line 5 \(first on line 3\)"):
        load_config(path)
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load_config(overrides=["model.vllm_options={a: 1, a: 2}"])


def test_evaluation_prints_no_git_noise(tiny_model, tiny_tokenizer, data_dir, tmp_path,
                                        monkeypatch, capfd) -> None:
    from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator

    if shutil.which("git") is None:
        pytest.skip("git is not installed: lm-eval cannot print its error")
    monkeypatch.chdir(tmp_path)  # not a git repository
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    ev = LMEvalEvaluator(tasks=["cream_arc_easy"], limit=1, batch_size=2, data_dir=data_dir)
    assert ev.evaluate(tiny_model, tiny_tokenizer)
    assert "not a git repository" not in capfd.readouterr().err


def test_report_on_a_plain_file_says_it_is_not_a_folder(tmp_path, capsys) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text("{}\n")
    assert main(["report", str(path)]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err


def test_judge_verdict_must_be_on_its_own_final_line() -> None:
    from cream_plugin.rewarders.judge import parse_judgement

    assert parse_judgement("The answer is right. Score: 3") is None
    assert parse_judgement("The answer is right.\nScore: 3") == 3.0
    assert parse_judgement("The answer is right.\n**Score:** 3") == 3.0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["report", "{run}", "--out", "/proc/no-such-folder/report.md"],
         "/proc/no-such-folder: No such file or directory [ENOENT]"),
    ],
)
def test_operating_system_errors_name_the_path_and_the_fix(tiny_run_dir, capsys, argv,
                                                           expected) -> None:
    (tiny_run_dir / "results.jsonl").write_text(json.dumps(
        {"method": "sft", "iteration": 1, "task": "t", "metric": "acc", "value": 0.5}) + "\n")
    code = main([a.format(run=tiny_run_dir) for a in argv])
    err = capsys.readouterr().err
    assert code == 1 and expected in err and "run with --debug" not in err, err


def test_describe_os_error_names_path_and_fix() -> None:
    import errno

    from cream_plugin.errors import describe_os_error

    full = describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/data/run/x.jsonl"))
    assert full.startswith("/data/run/x.jsonl: No space left on device [ENOSPC]; the disk is full")
    big = describe_os_error(OSError(errno.EFBIG, "File too large", "/r/M1/model.safetensors"))
    assert "/r/M1/model.safetensors" in big and "ulimit -f" in big
    assert "a -> b" in describe_os_error(OSError(errno.EXDEV, "Invalid cross-device link", "a",
                                                 None, "b"))


def test_no_cream_error_escapes_as_a_traceback_on_bad_model(tmp_path, data_dir) -> None:
    config = load_config(overrides=["model.name=./no-such-model", f"data.data_dir={data_dir}",
                                    f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(ModelLoadError, match="no-such-model does not exist"):
        Pipeline(config)
    assert not (tmp_path / "run").exists()
    assert issubclass(ModelLoadError, CreamError)


# -- property: the CLI's parser and config loader over empty, missing and extreme values ---------
class ReachedTheDisk(BaseException):
    """Raised where a run would first write: every check before it passed."""


EXTREME = st.sampled_from([
    "", " ", ",", "~", "null", "[]", "{}", "[,]", "-1", "0", "1e400", "-1e400", ".nan", ".inf",
    "9" * 40, "1e-400", "2e-1", "'", '"', "[", "{a: 1, a: 2}", "true", "-0", "x" * 300,
    "/nonexistent", "./no/such", "tiny-random", "1,2", "7", "a\tb", "\u00e9\u00e8", "4294967296",
])
NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True)).map(str)
VALUES = st.one_of(EXTREME, NUMBERS, st.text(max_size=8))
KEYS = st.sampled_from([key for key, *_ in explain()] + [
    "training.consistency_weight", "training.weight_decay", "nosuch", "model", "", "."])
FLAGS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["--output", "--method", "--seeds"]), VALUES),
        st.tuples(st.just("--set"), st.tuples(KEYS, VALUES).map("=".join)),
        st.tuples(st.just("--config"), st.sampled_from(["", "missing.yaml", "/nonexistent/c.yaml",
                                                        ".", "FILE"])),
    ),
    max_size=4,
)
FILE_TEXT = st.one_of(EXTREME, st.tuples(KEYS, VALUES).map(lambda kv: f"{kv[0]}: {kv[1]}\n"),
                      st.text(max_size=40))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(flags=FLAGS, preset=st.sampled_from([[], ["--preset", "smoke"]]), text=FILE_TEXT)
def test_property_run_arguments_give_an_error_or_a_checked_run_and_never_write(
        flags, preset, text, monkeypatch, capsys, tmp_path_factory, data_dir) -> None:
    """Random empty, missing and extreme values for ``cream run``'s flags, ``--set`` and a config
    file: the parser and the config loader (and preflight) end in a usage error (2), a one-line
    error (1) or a run whose every check passed; never a traceback, never a write."""
    from cream_plugin.loop import run_folder

    config_file = tmp_path_factory.mktemp("config") / "run.yaml"
    config_file.write_text(text, encoding="utf-8")
    work = tmp_path_factory.mktemp("work")

    def reached(*args: object, **kwargs: object) -> None:
        raise ReachedTheDisk

    monkeypatch.setattr(run_folder.RunFolder, "claim", reached)
    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    argv = ["run", *preset]
    for flag, value in flags:
        argv += [flag, str(config_file) if value == "FILE" else value]
    old = os.getcwd()
    os.chdir(work)
    try:
        code: int | str | None = main(argv)
    except SystemExit as exc:  # argparse: a usage error
        code = exc.code
    except ReachedTheDisk:
        code = "run"
    finally:
        os.chdir(old)
    err = capsys.readouterr().err
    event(f"exit {code}")
    assert code in (1, 2, "run"), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 1:
        lines = err.strip().splitlines()
        assert lines[-1].startswith("cream run: error: "), (argv, err)
        assert "run with --debug" not in lines[-1], (argv, err)  # every error is named
    assert list(work.iterdir()) == [], (argv, sorted(work.rglob("*")))
