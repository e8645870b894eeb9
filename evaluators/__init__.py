"""Built-in evaluators: lm-eval tasks for ARC, OpenBookQA, Social IQa and GSM8K.

``evaluators/tasks`` holds the task YAMLs (``cream_benchmarks`` with the stock lm-eval prompts,
``cream_cot_benchmarks`` with the CREAM paper's zero-shot CoT protocol); pass it to
``lm_eval --include_path`` (``cream tasks-path`` prints it).
"""

from pathlib import Path

TASKS_PATH = str(Path(__file__).resolve().parent / "tasks")
"""The task YAMLs folder (``lm_eval --include_path``)."""
