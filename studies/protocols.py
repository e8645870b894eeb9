"""The evaluation protocols on one model, item by item: scores, wall time, and for generative
tasks the raw generations with what was extracted from them and whether the token cap cut them.

Answers what a study's evaluation settings need checked: does letter extraction work on this
model's outputs (how often no letter is found), does ``max_gen_toks`` cut answers, what does
each protocol cost per model. Each task scores the same seeded items the study's evaluation
stage of that seed scores (``seeded_items``), on the study's evaluator (``CreamHFLM``: shared
contexts, greedy decode loop).

Run:  python studies/protocols.py MODEL_PATH --tasks cream_cot_arc_easy --limit 25 \
          --max-gen-toks 128 512 --seed 1 --out protocols.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cream_plugin.evaluators.lm_eval_evaluator import (
    CHAT_FLAG,
    LMEvalEvaluator,
    metric_rows,
    quiet_git_hash,
    seeded_items,
    task_utils,
)


def extracted(task: str, doc: dict[str, Any], text: str, utils: Any) -> str | None:
    """What the task's scorer reads from a generation (letter, number, or None)."""
    if "gsm8k" in task:
        return utils.extract_number(text)
    if task.startswith("cream_cot_"):
        return utils.extract_choice(text, len(utils.mc_view(doc)[1]))
    return None


def capped_items(path: Path, task: str) -> list[int]:
    """Doc ids whose generation the token cap cut in an earlier run of ``task`` (its JSON line
    in ``path``): re-run only those with a larger cap to see what the cap cost."""
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["task"] == task and "generations" in row:
            return sorted(g["doc_id"] for g in row["generations"] if g["capped"])
    raise SystemExit(f"{path}: no generations of {task} to take the capped items from")


def run_task(lm: Any, ev: LMEvalEvaluator, name: str, limit: int, seed: int,
             max_gen_toks: int | None, utils: Any, ids: list[int] | None = None
             ) -> dict[str, Any]:
    """One task on the seeded items (or on ``ids``): metrics, seconds, per-item generations."""
    from lm_eval import simple_evaluate

    task = ev.load_tasks([name])[name]
    if ids is None:
        ids = seeded_items(len(task.eval_docs), limit, seed, name)
    chat = bool((task.config.metadata or {}).get(CHAT_FLAG))
    generative = task.config.output_type == "generate_until"
    start = time.perf_counter()
    with quiet_git_hash():
        out = simple_evaluate(model=lm, tasks=[task], task_manager=ev.task_manager,
                              samples={name: ids}, apply_chat_template=chat,
                              fewshot_as_multiturn=chat, bootstrap_iters=0, log_samples=True,
                              gen_kwargs={"max_gen_toks": max_gen_toks}
                              if generative and max_gen_toks else None)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"task": name, "items": len(ids), "seconds": round(seconds, 1),
                              "max_gen_toks": max_gen_toks if generative else None,
                              "metrics": {r["metric"]: r["value"]
                                          for r in metric_rows(name, out["results"][name])}}
    if generative:
        rows = []
        for sample in out["samples"][name]:
            text = sample["resps"][0][0]
            tokens = len(lm.tok_encode(text))
            rows.append({"doc_id": sample["doc_id"], "target": sample["target"],
                         "extracted": extracted(name, sample["doc"], text, utils),
                         "tokens": tokens, "capped": bool(max_gen_toks) and
                         tokens >= (max_gen_toks or 0) - 1, "generation": text})
        result["generations"] = rows
        marked = [r for r in rows if name.startswith("cream_cot_")]
        result["no_answer_extracted"] = sum(r["extracted"] is None for r in marked)
        result["capped"] = sum(r["capped"] for r in rows)
        result["mean_tokens"] = round(sum(r["tokens"] for r in rows) / max(len(rows), 1), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a model folder (e.g. $(cream model-path))")
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--limit", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1, help="the study seed whose items to use")
    parser.add_argument("--max-gen-toks", type=int, nargs="+", default=[128])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per task run")
    parser.add_argument("--capped-from", type=Path,
                        help="score only the items an earlier run (its --out file) capped")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cream_plugin.evaluators.cream_hflm import CreamHFLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    lm = CreamHFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size)
    ev = LMEvalEvaluator(tasks=args.tasks)
    utils = task_utils()
    for name in args.tasks:
        generative = ev.load_tasks([name])[name].config.output_type == "generate_until"
        ids = capped_items(args.capped_from, name) if args.capped_from else None
        if ids == []:
            print(json.dumps({"task": name, "capped_items": 0}), flush=True)
            continue
        for cap in args.max_gen_toks if generative else [None]:
            result = run_task(lm, ev, name, args.limit, args.seed, cap, utils, ids)
            with args.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(result) + "\n")
            summary = {k: v for k, v in result.items() if k != "generations"}
            print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
