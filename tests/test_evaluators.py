"""The cream lm-eval tasks: same prompts as the stock tasks, local data, answer extraction,
the in-memory evaluator, `cream eval`, and third-party task folders through the hook."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from cream_plugin.errors import DataError
from cream_plugin.evaluators.lm_eval_evaluator import (
    TASKS_DIR,
    LMEvalEvaluator,
    metric_rows,
    task_utils,
)

STOCK_DIR = Path(importlib.util.find_spec("lm_eval").origin).parent / "tasks"  # type: ignore[union-attr,arg-type]


utils = task_utils()


# ----------------------------------------------------------------------- answer extraction

@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("Plants make food.\nAnswer: B", 4, "B"),
        ("Answer: a plant makes its own food", 4, None),  # article, not option A
        ("The answer is a good one. Answer: C", 4, "C"),
        ("Answer: A plant is alive", 4, None),
        ("Answer: A", 4, "A"),
        ("answer: (a)", 4, "A"),
        ("Answer: E", 5, "E"),
        ("Answer: E", 4, None),  # out of range for four options
        ("Answer: (D) because...", 4, "D"),
        ("**Answer: B.**", 4, "B"),
        ("I think A. Then again, Answer: D", 4, "D"),
        ("The answer is C.", 3, "C"),
        ("Step 1...\n(B)", 4, "B"),
        ("No idea", 4, None),
    ],
)
def test_extract_choice(text: str, n: int, expected: str | None) -> None:
    assert utils.extract_choice(text, n) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 + 4 = 7 apples.\nAnswer: 7", "7"),
        ("Answer: $1,250.00", "1250"),
        ("We get 12 then 18.", "18"),
        ("Answer: -3.5", "-3.5"),
        ("nothing here", None),
    ],
)
def test_extract_number(text: str, expected: str | None) -> None:
    assert utils.extract_number(text) == expected


def test_cot_prompt_letters_and_target() -> None:
    doc = {"question": "Q?", "choices": {"text": ["x", "y", "z", "w", "v"],
                                         "label": ["1", "2", "3", "4", "5"]}, "answerKey": "5"}
    text = utils.cot_mc_text(doc)
    assert "E. v" in text and 'Answer: X' in text
    assert utils.cot_mc_target(doc) == "E"
    assert utils.cot_mc_process(doc, ["so\nAnswer: E"]) == {"exact_match": 1.0}
    siqa = {"context": "C.", "question": "Why?", "answerA": "a", "answerB": "b",
            "answerC": "c", "label": "2"}
    assert utils.cot_mc_target(siqa) == "B" and utils.cot_mc_text(siqa).startswith("C. Why?")


# ------------------------------------------------------------------- same as the stock tasks

STOCK = {  # cream task -> (stock yaml, local data folder)
    "cream_arc_easy": ("arc/arc_easy.yaml", "arc_easy"),
    "cream_arc_challenge": ("arc/arc_challenge.yaml", "arc_challenge"),
    "cream_openbookqa": ("openbookqa/openbookqa.yaml", "openbookqa"),
    "cream_siqa": ("siqa/siqa.yaml", "social_iqa"),
    "cream_gsm8k": ("gsm8k/gsm8k.yaml", "gsm8k"),
}
SAME_CONFIG = ("output_type", "metric_list", "filter_list", "generation_kwargs",
               "target_delimiter", "fewshot_delimiter", "num_fewshot", "repeats", "test_split",
               "validation_split", "training_split", "fewshot_split")


def _stock_on_local_files(stock_yaml: str, folder: Path) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(STOCK_DIR / stock_yaml)
    files = {p.stem: str(p) for p in folder.glob("*.jsonl")}
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": files})
    cfg.pop("tag", None)
    cfg["task"] = "stock_" + cfg["task"]
    return cfg


@pytest.fixture(scope="module")
def task_pairs(data_dir: Path) -> dict[str, tuple[Any, Any]]:
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                     metadata={"data_dir": str(data_dir)})
    ours = tm.load(list(STOCK))["tasks"]
    pairs = {}
    for name, (stock_yaml, sub) in STOCK.items():
        cfg = _stock_on_local_files(stock_yaml, data_dir / sub)
        if "train" not in {p.stem for p in (data_dir / sub).glob("*.jsonl")}:
            cfg["training_split"] = None  # local Social IQa has only validation
        stock = next(iter(tm.load([cfg])["tasks"].values()))
        pairs[name] = (ours[name], stock)
    return pairs


@pytest.mark.parametrize("name", list(STOCK))
def test_renders_like_stock_task(task_pairs: dict[str, tuple[Any, Any]], name: str) -> None:
    ours, stock = task_pairs[name]
    assert len(ours.eval_docs) == len(stock.eval_docs) > 0
    shots = stock.config.num_fewshot or 0
    ours.set_fewshot_seed(1234)
    stock.set_fewshot_seed(1234)
    for i in range(3):
        a, b = ours.eval_docs[i], stock.eval_docs[i]
        assert ours.fewshot_context(a, shots) == stock.fewshot_context(b, shots)
        assert ours.doc_to_target(a) == stock.doc_to_target(b)
        if stock.config.doc_to_choice is not None:
            assert ours.doc_to_choice(a) == stock.doc_to_choice(b)
    for key in SAME_CONFIG:
        if name == "cream_siqa" and key == "training_split":
            continue
        assert getattr(ours.config, key) == getattr(stock.config, key), key


def test_local_data_from_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    dataset = utils.load(cream_name="openbookqa", hub_path="unused", pretrained="x")
    assert len(dataset["test"]) == 500 and len(dataset["validation"]) == 0


def test_malformed_row_names_file_and_line(tmp_path: Path, data_dir: Path) -> None:
    from lm_eval.tasks import TaskManager

    (tmp_path / "arc_easy").mkdir()
    good = (data_dir / "arc_easy" / "test.jsonl").read_text().splitlines()[:2]
    bad = json.loads(good[0])
    del bad["answerKey"]
    bad_file = tmp_path / "arc_easy" / "test.jsonl"
    bad_file.write_text("\n".join([*good, json.dumps(bad)]) + "\n")
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                     metadata={"data_dir": str(tmp_path)})
    with pytest.raises(DataError, match=rf"{bad_file}:3: missing field\(s\) answerKey"):
        tm.load(["cream_arc_easy"])


def test_missing_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        utils.load(cream_name="gsm8k", hub_path="x", data_dir=str(tmp_path / "nope"))


# ------------------------------------------------------------------------------ evaluator

class ScriptedLM:
    """An lm-eval LM that answers every question with option A (no model needed)."""

    def __new__(cls) -> Any:
        from lm_eval.api.model import LM

        class _LM(LM):
            prompts: list[str] = []  # noqa: RUF012

            def loglikelihood(self, requests):
                # Prefer the shortest continuation: a deterministic, checkable choice.
                return [(-float(len(r.args[1])), False) for r in requests]

            def loglikelihood_rolling(self, requests):
                return [0.0 for _ in requests]

            def generate_until(self, requests):
                self.prompts.extend(r.args[0] for r in requests)
                return ["Let me think.\nAnswer: A" for _ in requests]

            def apply_chat_template(self, chat_history, add_generation_prompt=True):
                body = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in chat_history)
                return body + ("<assistant>" if add_generation_prompt else "")

            @property
            def tokenizer_name(self) -> str:
                return "scripted"

        return _LM()


def test_evaluator_scores_match_the_data(data_dir: Path) -> None:
    from cream_plugin.data import read_jsonl

    ev = LMEvalEvaluator(tasks=["cream_cot_arc_easy", "cream_siqa"], limit=20,
                         data_dir=data_dir)
    lm = ScriptedLM()
    rows = ev.evaluate_lm(lm, bootstrap_iters=0)
    by_key = {(r["task"], r["metric"]): r for r in rows}
    docs = read_jsonl(data_dir / "arc_easy" / "test.jsonl")[:20]
    expected = sum(d["choices"]["label"].index(d["answerKey"]) == 0 for d in docs) / 20
    assert by_key[("cream_cot_arc_easy", "exact_match")]["value"] == pytest.approx(expected)
    siqa = read_jsonl(data_dir / "social_iqa" / "validation.jsonl")[:20]
    shortest = [min(range(3), key=lambda i: len(" " + d[f"answer{'ABC'[i]}"])) for d in siqa]
    hits = sum(int(d["label"]) - 1 == s for d, s in zip(siqa, shortest, strict=True)) / 20
    assert by_key[("cream_siqa", "acc")]["value"] == pytest.approx(hits)
    # The CoT family goes through the chat template; rows carry limit and time.
    assert lm.prompts and all(p.startswith("<user>") for p in lm.prompts)
    assert all(r["limit"] == 20 and r["seconds"] >= 0 for r in rows)
    assert ev.task_manager is ev.task_manager  # built once, reused


def test_evaluator_in_memory_hf_model(tiny_model: Any, tiny_tokenizer: Any,
                                      data_dir: Path) -> None:
    ev = LMEvalEvaluator(tasks=["cream_arc_easy", "cream_cot_gsm8k"], limit=2, batch_size=2,
                         data_dir=data_dir, generation_limit=1)
    manager = ev.task_manager
    rows = ev.evaluate(tiny_model, tiny_tokenizer, gen_kwargs={"max_gen_toks": 4})
    assert {(r["task"], r["metric"], r["limit"]) for r in rows} == {
        ("cream_arc_easy", "acc", 2), ("cream_arc_easy", "acc_norm", 2),
        ("cream_cot_gsm8k", "exact_match", 1)}
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)
    rows = ev.evaluate(tiny_model, tiny_tokenizer, tasks=["cream_siqa"], limit=1)
    assert [r["task"] for r in rows] == ["cream_siqa"] and ev.task_manager is manager


def test_unknown_task_lists_known_ones(data_dir: Path) -> None:
    from cream_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="cream_benchmarks"):
        LMEvalEvaluator(tasks=["nope"], data_dir=data_dir).load_tasks()


def test_metric_rows_keeps_filter_and_drops_missing_stderr() -> None:
    rows = metric_rows("t", {"alias": "t", "acc,none": 0.5, "acc_stderr,none": 0.1,
                             "exact_match,strict-match": 0.0,
                             "exact_match_stderr,strict-match": "N/A"})
    assert rows == [
        {"task": "t", "metric": "acc", "value": 0.5, "stderr": 0.1},
        {"task": "t", "metric": "exact_match,strict-match", "value": 0.0, "stderr": None},
    ]


def test_registered_with_tasks_path(fresh_plugins: None) -> None:
    from cream_plugin.plugins.registry import get_component, get_evaluator, task_paths

    assert get_component("evaluator", "lm-eval").extra["tasks_path"] == str(TASKS_DIR)
    assert str(TASKS_DIR) in task_paths()
    assert isinstance(get_evaluator("lm-eval", limit=3), LMEvalEvaluator)


# ----------------------------------------------------------------- third-party task folder

def test_plugin_evaluator_tasks_path(fresh_plugins: None, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from cream_plugin.cli import main
    from cream_plugin.plugins.hookspecs import hookimpl
    from cream_plugin.plugins.manager import get_plugin_manager
    from cream_plugin.plugins.registry import clear_cache

    tasks = tmp_path / "plugin_tasks"
    tasks.mkdir()
    data = tmp_path / "yesno.jsonl"
    data.write_text("".join(json.dumps({"q": f"Is {i} even?", "a": i % 2}) + "\n"
                            for i in range(6)))
    (tasks / "yesno.yaml").write_text(
        "task: plugin_yesno\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\ntest_split: test\n"
        'doc_to_text: "{{q}}"\ndoc_to_choice: ["yes", "no"]\ndoc_to_target: "{{a}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )

    plugin = types.ModuleType("yesno_plugin")

    @hookimpl
    def register_evaluators(register: Any) -> None:
        register("yesno", lambda **cfg: LMEvalEvaluator(tasks=["plugin_yesno"], **cfg),
                 tasks_path=str(tasks))

    plugin.register_evaluators = register_evaluators  # type: ignore[attr-defined]
    get_plugin_manager().add_plugin(plugin, "yesno_plugin", "test")
    clear_cache()

    assert main(["tasks-path", "--all"]) == 0
    assert capsys.readouterr().out.split() == [str(TASKS_DIR), str(tasks)]
    # lm_eval --include_path takes one folder: tasks-path merges both into one.
    assert main(["tasks-path"]) == 0
    merged = capsys.readouterr().out.strip()
    from lm_eval.tasks import TaskManager

    indexed = TaskManager(include_path=merged, include_defaults=False).all_tasks
    assert {"plugin_yesno", "cream_arc_easy", "cream_benchmarks"} <= set(indexed)

    from cream_plugin.plugins.registry import get_evaluator

    rows = get_evaluator("yesno").evaluate_lm(ScriptedLM(), bootstrap_iters=0)
    # The scripted LM prefers the shorter continuation, " no" (index 1): right for odd i.
    assert rows == [{"task": "plugin_yesno", "metric": "acc", "value": 0.5, "stderr": None,
                     "seconds": rows[0]["seconds"], "limit": None}]


# ------------------------------------------------------------------------------ cream eval

def test_cream_eval_writes_results_table(tiny_model_dir: Path, tmp_path: Path,
                                         data_dir: Path) -> None:
    from cream_plugin.cli import main
    from cream_plugin.report.results import read_results

    argv = ["eval", "--model", str(tiny_model_dir), "--tasks", "cream_openbookqa",
            "--limit", "2", "--batch-size", "2", "--data-dir", str(data_dir),
            "--run-dir", str(tmp_path), "--method", "cream", "--iteration", "1"]
    assert main(argv) == 0
    assert main(argv) == 0  # re-running replaces rows instead of duplicating them
    rows = read_results(tmp_path)
    assert sorted(r["metric"] for r in rows) == ["acc", "acc_norm"]
    assert all(r["method"] == "cream" and r["iteration"] == 1 and r["limit"] == 2
               and r["task"] == "cream_openbookqa" for r in rows)


def test_cream_eval_bad_limit(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cream_plugin.cli import main

    assert main(["eval", "--model", str(tiny_model_dir), "--limit", "0"]) == 1
    assert "--limit" in capsys.readouterr().err


def test_vllm_evaluator_needs_a_path() -> None:
    from cream_plugin.errors import ConfigError
    from cream_plugin.evaluators.vllm_evaluator import VLLMEvaluator

    with pytest.raises(ConfigError, match="checkpoint path"):
        VLLMEvaluator().evaluate(object())


# -------------------------------------------------------------------------------- slow ones

def _script(name: str) -> str:
    """A console script of this environment (its bin folder need not be on PATH, as in CI)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} command not found")
    return found


@pytest.mark.slow
def test_lm_eval_cli_offline(tiny_model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    """The documented `lm_eval run ... --include_path $(cream tasks-path)` command, offline."""
    env = {**os.environ, "CREAM_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    include = subprocess.run([_script("cream"), "tasks-path"], capture_output=True, text=True,
                             check=True, env=env).stdout.strip()
    proc = subprocess.run(
        [_script("lm_eval"), "run", "--model", "hf", "--model_args",
         f"pretrained={tiny_model_dir}", "--tasks", "cream_benchmarks", "--include_path",
         include, "--limit", "5", "--gen_kwargs", "max_gen_toks=16",
         "--output_path", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in STOCK:
        assert task in proc.stdout
    result = next((tmp_path / "out").rglob("results_*.json"))
    results = json.loads(result.read_text())["results"]
    assert set(STOCK) <= set(results)


@pytest.mark.slow
def test_cream_eval_smollm2_arc_easy_above_chance(tmp_path: Path, data_dir: Path) -> None:
    from cream_plugin.cli import main
    from cream_plugin.report.results import read_results

    os.environ.setdefault("CREAM_CACHE_DIR", "/tmp/creamcache")
    argv = ["eval", "--model", "smollm2-135m-instruct", "--tasks", "cream_arc_easy",
            "--limit", "40", "--data-dir", str(data_dir),
            "--run-dir", str(tmp_path), "--method", "sft", "--iteration", "0"]
    assert main(argv) == 0
    rows = {(r["task"], r["metric"]): r["value"] for r in read_results(tmp_path)}
    assert rows[("cream_arc_easy", "acc")] > 0.25 + 0.05  # four options: chance is 0.25


@pytest.mark.slow
def test_lm_eval_cli_without_data_folder_offline_names_cream_data_dir(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Plain `lm_eval` on a cream task, offline, with no CREAM_DATA_DIR: the error names the fix
    (set CREAM_DATA_DIR), not only datasets' "Couldn't reach ... on the Hub"."""
    env = {k: v for k, v in os.environ.items() if k != "CREAM_DATA_DIR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    include = subprocess.run([_script("cream"), "tasks-path"], capture_output=True, text=True,
                             check=True, env=env).stdout.strip()
    proc = subprocess.run(
        [_script("lm_eval"), "run", "--model", "hf", "--model_args",
         f"pretrained={tiny_model_dir}", "--tasks", "cream_arc_easy", "--include_path",
         include, "--limit", "1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode != 0
    assert "allenai/ai2_arc/ARC-Easy: not reachable on the Hub" in proc.stderr
    assert "set CREAM_DATA_DIR to the local data folder" in proc.stderr


# ------------------------------------------------------------------------ seeded benchmark items

def test_seeded_items_differ_by_seed_and_repeat_for_the_same_seed() -> None:
    from cream_plugin.evaluators.lm_eval_evaluator import seeded_items

    a = seeded_items(1000, 20, seed=1, task="cream_arc_easy")
    assert a == seeded_items(1000, 20, seed=1, task="cream_arc_easy")  # resume-stable
    assert a == sorted(a) and len(set(a)) == 20 and all(0 <= i < 1000 for i in a)
    assert a != seeded_items(1000, 20, seed=2, task="cream_arc_easy")
    assert a != seeded_items(1000, 20, seed=1, task="cream_siqa")  # tasks draw independently
    assert a != list(range(20))  # not the first N
    assert seeded_items(5, 20, seed=1, task="t") == [0, 1, 2, 3, 4]


def test_evaluator_scores_the_seeded_items_it_records(data_dir: Path) -> None:
    """Each seed scores its own sample of items: lm-eval's ``samples`` selection reaches the
    right documents (scores checked against the data at those ids) and is recorded."""
    from cream_plugin.data import read_jsonl
    from cream_plugin.evaluators.lm_eval_evaluator import seeded_items

    siqa = read_jsonl(data_dir / "social_iqa" / "validation.jsonl")
    chosen: dict[int, list[int]] = {}
    for seed in (1, 2):
        ev = LMEvalEvaluator(tasks=["cream_siqa"], limit=6, data_dir=data_dir, item_seed=seed)
        items: list[dict[str, Any]] = []
        rows = ev.evaluate_lm(ScriptedLM(), bootstrap_iters=0, items=items)
        ids = seeded_items(len(siqa), 6, seed, "cream_siqa")
        assert sorted(r["doc_id"] for r in items) == ids
        assert ev.chosen_items["cream_siqa"] == {"rule": f"seeded sample (seed {seed})",
                                                 "of": len(siqa), "doc_ids": ids}
        docs = [siqa[i] for i in ids]
        shortest = [min(range(3), key=lambda i: len(" " + d[f"answer{'ABC'[i]}"])) for d in docs]
        hits = sum(int(d["label"]) - 1 == s for d, s in zip(docs, shortest, strict=True)) / 6
        acc = next(r for r in rows if r["metric"] == "acc")
        assert acc["value"] == pytest.approx(hits) and acc["limit"] == 6
        by_id = {r["doc_id"]: r["acc"] for r in items}
        assert [by_id[i] for i in ids] == [
            float(int(d["label"]) - 1 == s) for d, s in zip(docs, shortest, strict=True)]
        chosen[seed] = ids
    assert chosen[1] != chosen[2]
    first = LMEvalEvaluator(tasks=["cream_siqa"], limit=6, data_dir=data_dir)
    first.evaluate_lm(ScriptedLM(), bootstrap_iters=0)
    assert first.chosen_items["cream_siqa"] == {"rule": "first 6", "of": len(siqa)}


def test_the_evaluation_stage_depends_on_the_seed_and_passes_it(tmp_path: Path) -> None:
    """A run's seed picks its items: it reaches the evaluator as ``item_seed`` and is part of
    the evaluation stage's identity, so a resumed run with the same seed keeps its evaluation
    (and its items) and another seed re-evaluates on other items."""
    from cream_plugin.config import load_config
    from cream_plugin.loop.context import RunContext
    from cream_plugin.loop.distributed import DistContext
    from cream_plugin.loop.stages.evaluate import EvaluateStage, evaluator_resources
    from cream_plugin.plugins.registry import build

    ctx = RunContext(load_config(overrides=["seed=5", "evaluation.limit=3"]), tmp_path,
                     DistContext())
    evaluator = build("evaluator", "lm-eval", evaluator_resources(ctx))
    assert evaluator.item_seed == 5 and evaluator.limit == 3
    assert "seed" in EvaluateStage.settings and "evaluation" in EvaluateStage.settings
