"""The open-question tasks (ARC asked without its options, scored against the gold option's
text): normalisation, contains_gold, token F1, which questions are kept, the tasks loading in
lm-eval, and per-item rows that carry every metric (paired tests need them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cream_plugin.evaluators.lm_eval_evaluator import TASKS_DIR, LMEvalEvaluator, task_utils

OPEN_TASKS = {"cream_open_arc_easy": "arc_easy", "cream_open_arc_challenge": "arc_challenge"}
utils = task_utils("open_utils")
mc_utils = task_utils()


def _arc(question: str, options: list[str], key: int) -> dict[str, Any]:
    labels = list("ABCD")[: len(options)]
    return {"question": question, "choices": {"text": options, "label": labels},
            "answerKey": labels[key]}


# --------------------------------------------------------------------------------- scoring

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Sun!", "sun"),
        ("  An  ice-cube,\nmelting. ", "ice cube melting"),
        ("A", ""),  # a bare letter "A" is an article to SQuAD's normalisation
        ("Theory of the atom", "theory of atom"),
    ],
)
def test_normalize_answer_is_squads(text: str, expected: str) -> None:
    assert utils.normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        ("The answer is the Sun.", "the sun", 1.0),
        ("Plants get energy from sunlight", "sunlight", 1.0),
        ("It is nice weather", "ice", 0.0),  # whole words only
        ("Water vapor condenses", "water", 1.0),
        ("B", "water", 0.0),  # a letter is no answer to an open question
        ("anything", "the", 0.0),  # a gold that normalises to nothing never matches
    ],
)
def test_contains_gold(answer: str, gold: str, expected: float) -> None:
    assert utils.contains_gold(answer, gold) == expected


def test_token_f1_squad_values() -> None:
    assert utils.token_f1("the sun", "Sun") == 1.0
    assert utils.token_f1("red blood cells", "white blood cells") == pytest.approx(2 / 3)
    # 1 shared token of 4 predicted and 1 gold: P = 1/4, R = 1, F1 = 0.4
    assert utils.token_f1("it is mostly water", "water") == pytest.approx(0.4)
    assert utils.token_f1("", "water") == 0.0 and utils.token_f1("rock", "water") == 0.0
    assert utils.token_f1("water water", "water") == pytest.approx(2 / 3)  # multiset overlap


def test_open_process_scores_and_measures_length() -> None:
    doc = _arc("Which gas do plants take in?", ["oxygen", "carbon dioxide", "helium"], 1)
    assert utils.open_text(doc) == "Which gas do plants take in?"
    assert utils.open_gold(doc) == "carbon dioxide"
    out = utils.open_process(doc, [" Plants take in carbon dioxide. \n"])
    assert out == {"contains_gold": 1.0, "f1": pytest.approx(2 * (2 / 5) / (2 / 5 + 1)),
                   "answer_chars": float(len("Plants take in carbon dioxide."))}
    assert utils.open_process(doc, ["B"]) == {"contains_gold": 0.0, "f1": 0.0,
                                              "answer_chars": 1.0}


@pytest.mark.parametrize(
    ("doc", "kept"),
    [
        (_arc("Which resource is renewable?", ["coal", "wind"], 1), True),
        (_arc("Which of these is renewable?", ["coal", "wind"], 1), False),
        (_arc("Which event below is a chemical change?", ["rust", "melt"], 0), False),
        (_arc("What do plants need?", ["water", "all of the above"], 1), False),
        (_arc("Why is the sky blue?", ["air scatters blue light more than red light", "x"], 0),
         False),  # a sentence-long gold
        (_arc("Why is the sky blue?", ["Rayleigh scattering of light", "x"], 0), True),
    ],
)
def test_open_answerable(doc: dict[str, Any], kept: bool) -> None:
    assert utils.open_answerable(doc) is kept


# ------------------------------------------------------------------------- in lm-eval

def test_open_tasks_load_in_lm_eval_without_options(data_dir: Path) -> None:
    from lm_eval.tasks import TaskManager

    from cream_plugin.data import read_jsonl

    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                     metadata={"data_dir": str(data_dir)})
    assert set(OPEN_TASKS) <= set(tm.load(["cream_open_benchmarks"])["tasks"])
    for name, folder in OPEN_TASKS.items():
        task = tm.load([name])["tasks"][name]
        rows = read_jsonl(data_dir / folder / "test.jsonl")
        kept = [r for r in rows if utils.open_answerable(r)]
        assert 0 < len(task.eval_docs) == len(kept) < len(rows)
        doc = task.eval_docs[0]
        assert task.doc_to_text(doc) == kept[0]["question"]
        assert task.doc_to_target(doc) == utils.open_gold(kept[0])
        assert task.config.output_type == "generate_until"
        assert task.config.metadata["cream_chat"] is True  # scored as a chat turn
        assert {m["metric"] for m in task.config.metric_list} == {"contains_gold", "f1",
                                                                 "answer_chars"}


class GoldOnEvenLM:
    """Answers with the gold text (inside a sentence) when the prompt's question is at an even
    position of ``golds``, else with a bare letter: every item's scores are known."""

    def __new__(cls, golds: dict[str, str]) -> Any:
        from lm_eval.api.model import LM

        order = list(golds)

        class _LM(LM):
            def loglikelihood(self, requests):
                raise AssertionError("the open tasks only generate")

            def loglikelihood_rolling(self, requests):
                raise AssertionError("the open tasks only generate")

            def generate_until(self, requests):
                out = []
                for request in requests:
                    question = request.args[0].removeprefix("<user>")
                    even = order.index(question) % 2 == 0
                    out.append(f"I think it is {golds[question]}." if even else "B")
                return out

            def apply_chat_template(self, chat_history, add_generation_prompt=True):
                return "".join(f"<{m['role']}>{m['content']}" for m in chat_history)

            @property
            def tokenizer_name(self) -> str:
                return "scripted"

        return _LM()


def test_item_rows_carry_every_metric(data_dir: Path) -> None:
    """Per-item rows hold contains_gold, f1 and answer_chars, and the aggregates are their
    means; the report pairs models on contains_gold."""
    from cream_plugin.data import read_jsonl
    from cream_plugin.report.results import main_metric

    rows = [r for r in read_jsonl(data_dir / "arc_easy" / "test.jsonl")
            if utils.open_answerable(r)]
    golds = {r["question"]: utils.open_gold(r) for r in rows}
    ev = LMEvalEvaluator(tasks=["cream_open_arc_easy"], limit=8, data_dir=data_dir,
                         item_seed=3)
    items: list[dict[str, Any]] = []
    results = ev.evaluate_lm(GoldOnEvenLM(golds), bootstrap_iters=0, items=items)
    order = list(golds)
    assert len(items) == 8
    for item in items:
        question = rows[item["doc_id"]]["question"]
        even = order.index(question) % 2 == 0
        answer = f"I think it is {golds[question]}." if even else "B"
        assert item["contains_gold"] == float(even)
        assert item["f1"] == pytest.approx(utils.token_f1(answer, golds[question]))
        assert item["answer_chars"] == len(answer)
    means = {r["metric"]: r["value"] for r in results}
    for metric in ("contains_gold", "f1", "answer_chars"):
        assert means[metric] == pytest.approx(sum(i[metric] for i in items) / 8)
    assert main_metric("cream_open_arc_easy", [f"{m},none" for m in means]) == \
        "contains_gold,none"
    assert main_metric("cream_open_arc_easy", list(means)) == "contains_gold"


# ------------------------------------------- letter extraction on SmolLM2-135M's CoT answers

@pytest.mark.parametrize(
    ("text", "expected"),
    [  # generations of SmolLM2-135M-Instruct M0 on cream_cot_arc_easy (docs/evaluation.md)
        ("A. evaporate sooner.\nB. take longer to increase in temperature.\nC. condense over a "
         "longer period.\nD. chemically break down at a faster rate.\n\nThe correct answer is: "
         "C. condense over a longer period.", "C"),
        ("A. a tissue.\nB. an organelle.\nC. an organism.\nD. a system.\n\nThe correct answer "
         "is D. A system.", "D"),
        ("... smaller than the Sun.\n\nThe answer is A. The Sun is medium-sized compared to "
         "other stars.", "A"),
        # the options repeated and no choice made: no letter, not option A or D
        ("A. liver\nB. stomach\nC. small intestine\nD. large intestine", None),
        ("A. endocrine", None),
        ("Step 1: Identify the correct answer.\nA. 0.7 g\nB. 9.3 g\n\nStep 2: Determine the "
         "answer.\nA. 0.7 g", None),
    ],
)
def test_extract_choice_on_smollm2_generations(text: str, expected: str | None) -> None:
    assert mc_utils.extract_choice(text, 4) == expected


# ------------------------------------------------------------ identity of evaluation stages

def test_open_pool_files_leave_the_other_tasks_digest_alone(tmp_path: Path) -> None:
    """The open tasks' files are outside the task folder's digest, so adding or editing them
    redoes no evaluation that does not run them; editing another task file still does."""
    import shutil

    from cream_plugin.loop.stages.evaluate import open_tasks_code_digest, tasks_code_digest

    folder = tmp_path / "tasks"
    shutil.copytree(TASKS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    with_pool = tasks_code_digest(folder)
    pool = open_tasks_code_digest(folder)
    for path in folder.iterdir():
        if path.name.startswith(("cream_open_", "_cream_open_", "open_utils")):
            path.unlink()
    assert tasks_code_digest(folder) == with_pool
    assert open_tasks_code_digest(folder) != pool
    (folder / "utils.py").write_text((folder / "utils.py").read_text() + "\n# edited\n")
    assert tasks_code_digest(folder) != with_pool


def test_only_evaluations_running_open_tasks_hash_their_code(tmp_path: Path) -> None:
    from cream_plugin.config import load_config
    from cream_plugin.loop.context import RunContext
    from cream_plugin.loop.distributed import DistContext
    from cream_plugin.loop.stages.evaluate import EvaluateStage, open_tasks_code_digest

    stage = EvaluateStage("sft", 1, "M1")

    def inputs(tasks: str) -> dict[str, str]:
        ctx = RunContext(load_config(overrides=[f"evaluation.tasks=[{tasks}]"]), tmp_path,
                         DistContext())
        ctx.model_digest = lambda key: "m"  # type: ignore[method-assign]
        return stage.inputs(ctx)

    plain = inputs("cream_arc_easy,cream_cot_arc_easy")
    assert set(plain) == {"model", "data", "tasks"}
    with_open = inputs("cream_arc_easy,cream_open_arc_easy")
    assert with_open == {**plain, "open_tasks": open_tasks_code_digest()}
    assert "open_tasks" in inputs("cream_open_benchmarks")
