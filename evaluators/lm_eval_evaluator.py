"""Score a model on lm-eval tasks (the cream tasks and any plugin's) and return flat rows.

The TaskManager indexes only the registered task folders (``include_defaults=False``: ~0.05 s
instead of ~9 s) and is built once per evaluator. Each leaf task runs in its own
``simple_evaluate`` call so every row carries its task's wall time, and the chat template is
applied exactly to the tasks whose metadata asks for it (``cream_chat: true``, the CoT family).

With a ``limit`` and an ``item_seed``, each task scores a seeded random sample of its documents
(:func:`seeded_items`, passed to lm-eval as ``simple_evaluate(samples={task: doc_ids})``, the
same selection ``lm_eval --samples`` takes) instead of the first ``limit``: runs with different
seeds then replicate benchmark items too. Without an ``item_seed``, lm-eval's first-N rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
CHAT_FLAG = "cream_chat"
DEFAULT_TASKS = ("cream_benchmarks",)


def metric_rows(task: str, task_results: dict[str, Any]) -> list[dict[str, Any]]:
    """lm-eval's ``{"acc,none": v, "acc_stderr,none": s}`` as rows {task, metric, value, stderr}.

    The metric keeps lm-eval's filter name unless it is ``none``: ``acc``,
    ``exact_match,strict-match``.
    """
    rows = []
    for key, value in task_results.items():
        if "," not in key or "_stderr," in key or not isinstance(value, int | float):
            continue
        metric, filter_name = key.split(",", 1)
        stderr = task_results.get(f"{metric}_stderr,{filter_name}")
        if not isinstance(stderr, int | float) or math.isnan(stderr):
            stderr = None
        name = metric if filter_name == "none" else key
        rows.append({"task": task, "metric": name, "value": float(value),
                     "stderr": None if stderr is None else float(stderr)})
    return rows


def task_utils(name: str = "utils") -> Any:
    """A module of the task folder (``utils``: prompts, answer extraction; ``open_utils``: the
    open questions' scorers): lm-eval imports them by path, not as part of this package, and
    so do studies and tests."""
    import importlib.util

    path = TASKS_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"cream_task_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seeded_items(num_docs: int, limit: int, seed: int, task: str) -> list[int]:
    """Sorted doc ids of a seeded sample of ``limit`` of a task's ``num_docs`` documents
    (all of them when ``limit >= num_docs``). The task name joins the seed, so tasks draw
    independently; the same (seed, task, sizes) always gives the same ids (resume-stable)."""
    import numpy as np

    if limit >= num_docs:
        return list(range(num_docs))
    key = int.from_bytes(hashlib.sha256(task.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, key])
    return sorted(int(i) for i in rng.choice(num_docs, size=limit, replace=False))


class LMEvalEvaluator:
    """lm-evaluation-harness over an in-memory HF model (see ``evaluate``)."""

    def __init__(
        self,
        tasks: Sequence[str] = DEFAULT_TASKS,
        limit: int | None = None,
        batch_size: int = 16,
        num_fewshot: int | None = None,
        data_dir: str | Path | None = None,
        include_paths: Sequence[str | Path] | None = None,
        generation_limit: int | None = None,
        decode_loop: bool = True,
        shared_context: bool = True,
        item_seed: int | None = None,
    ) -> None:
        """``generation_limit`` caps the items of generation tasks (GSM8K, CoT), which cost
        seconds per item on a CPU, below the ``limit`` of the loglikelihood tasks.
        ``decode_loop`` runs greedy generation on cream's decode loop (``DecodeLoopHFLM``: the
        same strings as lm-eval's ``generate`` path, each row stopping at its own stop string).
        ``shared_context`` scores the choices of a multiple-choice item from one pass over their
        shared context (``CreamHFLM``: HFLM's log-likelihoods, the context run once).
        ``item_seed``: with a limit, score a seeded sample of each task's items (the run's
        seed in the pipeline), not the first ones; :attr:`chosen_items` records them."""
        if isinstance(tasks, str):
            tasks = [tasks]
        self.tasks = list(tasks)
        self.limit = limit
        self.batch_size = batch_size
        self.num_fewshot = num_fewshot
        self.data_dir = str(Path(data_dir).expanduser().resolve()) if data_dir else None
        self._include_paths = [str(p) for p in include_paths] if include_paths else None
        self.generation_limit = generation_limit
        self.decode_loop = decode_loop
        self.shared_context = shared_context
        self.item_seed = item_seed
        self.chosen_items: dict[str, dict[str, Any]] = {}
        """Per task of the last calls: how its items were chosen, and the doc ids if sampled."""
        self._task_manager: Any = None

    def include_paths(self) -> list[str]:
        """This package's task folder plus every registered evaluator's ``tasks_path``."""
        if self._include_paths is None:
            from cream_plugin.plugins.registry import task_paths

            self._include_paths = [str(TASKS_DIR)]
            self._include_paths += [p for p in task_paths() if p not in self._include_paths]
        return self._include_paths

    @property
    def task_manager(self) -> Any:
        """The lm-eval TaskManager, indexed once and reused by every ``evaluate`` call."""
        if self._task_manager is None:
            from lm_eval.tasks import TaskManager

            metadata = {"data_dir": self.data_dir} if self.data_dir else {}
            self._task_manager = TaskManager(
                include_path=self.include_paths(), include_defaults=False, metadata=metadata
            )
        return self._task_manager

    def load_tasks(self, tasks: Sequence[str] | None = None) -> dict[str, Any]:
        """Leaf Task objects (groups expanded) by name, data loaded."""
        from cream_plugin.errors import ConfigError

        names = list(tasks or self.tasks)
        known = set(self.task_manager.all_tasks)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"unknown lm-eval task(s) {', '.join(unknown)}; known in "
                f"{', '.join(self.include_paths())}: {', '.join(sorted(known))}"
            )
        loaded: dict[str, Any] = self.task_manager.load(names)["tasks"]
        return loaded

    keeps_items = True
    """``evaluate(..., items=[])`` fills the list with per-item scores."""

    def evaluate(self, model: Any, tokenizer: Any, **options: Any) -> list[dict[str, Any]]:
        """Rows {task, metric, value, stderr, seconds, limit} for an in-memory model.

        ``tokenizer`` is the object (HFLM would otherwise reload it from the model's name).
        Options: ``tasks``, ``limit``, ``num_fewshot``, ``batch_size``, ``decode_loop``,
        ``shared_context`` override the constructor. The model is wrapped in ``CreamHFLM``
        (lm-eval ``cream-hf``), or in stock ``HFLM`` when both fast paths are off.
        """
        from lm_eval.models.huggingface import HFLM

        from cream_plugin.evaluators.cream_hflm import CreamHFLM

        decode_loop = options.pop("decode_loop", self.decode_loop)
        shared_context = options.pop("shared_context", self.shared_context)
        batch_size = options.pop("batch_size", self.batch_size)
        lm: Any
        if decode_loop or shared_context:
            lm = CreamHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                           decode_loop=decode_loop, shared_context=shared_context)
        else:
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        return self.evaluate_lm(lm, **options)

    def evaluate_lm(
        self,
        lm: Any,
        *,
        tasks: Sequence[str] | None = None,
        limit: int | None = None,
        num_fewshot: int | None = None,
        bootstrap_iters: int = 1000,
        gen_kwargs: dict[str, Any] | None = None,
        items: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Score an lm-eval ``LM`` (HFLM, VLLM, ...) on the tasks; one call per leaf task.

        ``gen_kwargs`` (e.g. ``{"max_gen_toks": 64}``) update generation tasks' settings.
        ``items``, when given, receives one row per scored item (task, doc_id, filter and its
        metric values, from lm-eval's ``log_samples``): what paired tests between models need.
        """
        from lm_eval import simple_evaluate
        from tqdm.auto import tqdm

        limit = self.limit if limit is None else limit
        num_fewshot = self.num_fewshot if num_fewshot is None else num_fewshot
        rows: list[dict[str, Any]] = []
        loaded = self.load_tasks(tasks)
        logging.getLogger("lm_eval").setLevel(logging.WARNING)
        for name, task in (bar := tqdm(loaded.items(), desc="lm-eval", unit="task")):
            bar.set_postfix_str(name)
            chat = bool((task.config.metadata or {}).get(CHAT_FLAG))
            task_limit = limit
            if self.generation_limit and task.config.output_type == "generate_until":
                task_limit = min(limit or self.generation_limit, self.generation_limit)
            samples = self._choose_items(name, task, task_limit)
            start = time.perf_counter()
            with quiet_git_hash():
                out = simple_evaluate(
                    model=lm,
                    tasks=[task],
                    task_manager=self.task_manager,
                    limit=None if samples else task_limit,
                    samples=samples,
                    num_fewshot=num_fewshot,
                    apply_chat_template=chat,
                    fewshot_as_multiturn=chat,
                    bootstrap_iters=bootstrap_iters,
                    gen_kwargs=gen_kwargs,
                    log_samples=items is not None,
                )
            seconds = time.perf_counter() - start
            if out is None:  # non-zero rank in a distributed run
                continue
            for row in metric_rows(name, out["results"].get(name, {})):
                row.update(seconds=round(seconds, 3), limit=task_limit)
                rows.append(row)
            if items is not None:
                items.extend(item_rows(name, out.get("samples", {}).get(name, [])))
        return rows

    def _choose_items(self, name: str, task: Any, limit: int | None
                      ) -> dict[str, list[int]] | None:
        """lm-eval's ``samples`` argument for a seeded sample, or None (all, or the first N)."""
        total = len(task.eval_docs)
        if limit is None or self.item_seed is None:
            how = "all" if limit is None or limit >= total else f"first {limit}"
            self.chosen_items[name] = {"rule": how, "of": total}
            return None
        ids = seeded_items(total, limit, self.item_seed, name)
        self.chosen_items[name] = {"rule": f"seeded sample (seed {self.item_seed})",
                                   "of": total, "doc_ids": ids}
        return {name: ids}


@contextlib.contextmanager
def quiet_git_hash() -> Iterator[None]:
    """lm-eval records the commit of the current folder by running ``git describe`` with the
    terminal as its stderr, so outside a git repository every evaluation printed "fatal: not a
    git repository"; while lm-eval runs, the same question is asked with git's stderr captured."""
    import lm_eval.evaluator as lm_eval_evaluator

    original = lm_eval_evaluator.get_git_commit_hash
    lm_eval_evaluator.get_git_commit_hash = git_commit_hash
    try:
        yield
    finally:
        lm_eval_evaluator.get_git_commit_hash = original


def git_commit_hash() -> str | None:
    """The commit of the current folder as lm-eval reports it, or None outside a repository."""
    import subprocess

    from lm_eval.loggers.utils import get_commit_from_path

    try:
        done = subprocess.run(["git", "describe", "--always"], capture_output=True, check=True,
                              timeout=30)
    except (subprocess.SubprocessError, OSError):
        return get_commit_from_path(os.getcwd())
    return done.stdout.decode(errors="replace").strip()


def item_rows(task: str, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Compact per-item rows from lm-eval ``log_samples``: task, doc_id, filter, metric values."""
    out = []
    for sample in samples:
        row: dict[str, Any] = {
            "task": task,
            "doc_id": sample.get("doc_id"),
            "filter": sample.get("filter", "none"),
        }
        for metric in sample.get("metrics", []):
            value = sample.get(metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[metric] = float(value)
        out.append(row)
    return out
