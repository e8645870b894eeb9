"""One vLLM engine, several checks against the HF path; writes what it saw as JSON.

Run by tests/test_vllm_adapters.py in a subprocess: vLLM starts worker processes, so the engine
is created under ``if __name__ == "__main__"``, and one engine start (~40 s on 2 cores) serves
every check of one model. The script only measures; the tests decide what is right.

    python engine_checks.py --model smollm2-135m-instruct --out out.json --data-dir DATA
        [--sampler] [--mc-tasks cream_arc_easy ... --mc-limit 8] [--gsm8k 3] [--release]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

PROMPTS: list[Any] = [
    "Name a prime number.",
    "Write one sentence about the sea.",
    [{"role": "user", "content": "What is two plus three?"}],
    "Give me a fruit.",
]


def process_tree() -> dict[str, Any]:
    """This process's RSS and its live children (zombies are not live: they hold no memory)."""
    import psutil

    me = psutil.Process()
    kids = []
    for child in me.children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            kids.append({"pid": child.pid, "name": child.name(),
                         "rss_mb": child.memory_info().rss / 2**20})
        except psutil.NoSuchProcess:
            continue
    return {"rss_mb": me.memory_info().rss / 2**20, "children": kids}


def seed_prompts(data_dir: str, count: int) -> list[Any]:
    from cream_plugin.data import load_rows

    rows = load_rows("seed_sft", "train", data_dir)
    return [[m for m in row["messages"] if m["role"] != "assistant"] for row in rows[:count]]


def sampler_checks(engine: Any, model: Any, tokenizer: Any, data_dir: str) -> dict[str, Any]:
    from cream_plugin.forward.sampling import HFSampler
    from cream_plugin.forward.sampling_vllm import VLLMSampler

    sampler = VLLMSampler(engine, temperature=0.8, top_p=0.95, max_new_tokens=24)
    first = sampler.generate(PROMPTS, 3, seed=1)
    reversed_order = sampler.generate(PROMPTS[::-1], 3, seed=1)[::-1]
    again = sampler.generate(PROMPTS, 3, seed=1)
    other_seed = sampler.generate(PROMPTS, 3, seed=2)
    stats = dict(sampler.stats)
    # EOS forced as the first token: every response is empty, and must be kept and counted.
    eos = int(tokenizer.eos_token_id)
    forced = VLLMSampler(engine, max_new_tokens=8, sampling_options={"logit_bias": {eos: 100.0}})
    empties = forced.generate(PROMPTS[:2], 2, seed=0)
    greedy_vllm = VLLMSampler(engine, temperature=0, max_new_tokens=24).generate(PROMPTS, 1, seed=0)
    greedy_hf = HFSampler(model, tokenizer, temperature=0, max_new_tokens=24,
                          progress=False).generate(PROMPTS, 1, seed=0)
    # 24 seed prompts x N=5: more prompt tokens than one engine step takes (the case that
    # failed with "CPU Generator does not use offset" while prefills were chunked).
    many = VLLMSampler(engine, max_new_tokens=4).generate(seed_prompts(data_dir, 24), 5, seed=0)
    return {
        "many_counts": [len(r) for r in many],
        "first": first, "reversed_order": reversed_order, "again": again,
        "other_seed": other_seed, "stats": stats,
        "owns_engine": sampler.owns_engine, "start_seconds": sampler.start_seconds,
        "empties": empties, "empty_stats": dict(forced.stats),
        "greedy_vllm": greedy_vllm, "greedy_hf": greedy_hf,
    }


def task_instances(evaluator: Any, name: str, limit: int) -> list[Any]:
    task = evaluator.load_tasks([name])[name]
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return list(task.instances)


def mc_checks(engine: Any, model: Any, tokenizer: Any, data_dir: str, tasks: list[str],
              limit: int) -> dict[str, Any]:
    """Per-request log-likelihoods of both backends on the same instances, and the task rows."""
    from lm_eval.models.huggingface import HFLM

    from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator
    from cream_plugin.evaluators.vllm_evaluator import VLLMEvaluator, lm_on_engine

    vllm_eval = VLLMEvaluator(tasks=tasks, limit=limit, data_dir=data_dir)
    hf_eval = LMEvalEvaluator(tasks=tasks, limit=limit, data_dir=data_dir, batch_size=8)
    vllm_lm = lm_on_engine(engine)
    hf_lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)
    out: dict[str, Any] = {"loglikelihood": {}}
    for name in tasks:
        instances = task_instances(vllm_eval, name, limit)
        started = time.perf_counter()
        v = vllm_lm.loglikelihood(instances, disable_tqdm=True)
        vllm_s = time.perf_counter() - started
        started = time.perf_counter()
        h = hf_lm.loglikelihood(instances, disable_tqdm=True)
        out["loglikelihood"][name] = {
            "vllm": [list(x) for x in v], "hf": [list(x) for x in h],
            "vllm_seconds": vllm_s, "hf_seconds": time.perf_counter() - started,
        }
    out["rows_vllm"] = vllm_eval.evaluate(engine)
    out["evaluator_start_seconds"] = vllm_eval.start_seconds
    out["rows_hf"] = hf_eval.evaluate(model, tokenizer)
    return out


def gsm8k_checks(engine: Any, model: Any, tokenizer: Any, data_dir: str,
                 items: int) -> dict[str, Any]:
    """Greedy 5-shot GSM8K generations (96 new tokens at most) from both backends."""
    from cream_plugin.evaluators.decode_loop_hflm import DecodeLoopHFLM
    from cream_plugin.evaluators.vllm_evaluator import VLLMEvaluator, lm_on_engine

    evaluator = VLLMEvaluator(tasks=["cream_gsm8k"], data_dir=data_dir)
    instances = task_instances(evaluator, "cream_gsm8k", items)
    for inst in instances:
        context, kwargs = inst.args
        inst.arguments = (context, {**kwargs, "max_gen_toks": 96})
    started = time.perf_counter()
    v = lm_on_engine(engine).generate_until(instances, disable_tqdm=True)
    vllm_s = time.perf_counter() - started
    hf_lm = DecodeLoopHFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    started = time.perf_counter()
    h = hf_lm.generate_until(instances, disable_tqdm=True)
    return {"vllm": v, "hf": h, "vllm_seconds": vllm_s,
            "hf_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--sampler", action="store_true")
    parser.add_argument("--mc-tasks", nargs="*", default=[])
    parser.add_argument("--mc-limit", type=int, default=8)
    parser.add_argument("--gsm8k", type=int, default=0)
    parser.add_argument("--release", action="store_true")
    args = parser.parse_args()

    from cream_plugin.forward.models import load_model, load_tokenizer
    from cream_plugin.forward.sampling_vllm import VLLMEngine

    result: dict[str, Any] = {"before": process_tree()}
    engine = VLLMEngine(args.model, dtype="float32")
    result.update(model_path=engine.model_path, start_seconds=engine.start_seconds,
                  options={k: v for k, v in engine.options.items()}, running=process_tree())
    model = load_model(engine.model_path, dtype="float32", device="cpu")
    tokenizer = load_tokenizer(engine.model_path)
    if args.sampler:
        result["sampler"] = sampler_checks(engine, model, tokenizer, args.data_dir)
    if args.mc_tasks:
        result["mc"] = mc_checks(engine, model, tokenizer, args.data_dir, args.mc_tasks,
                                 args.mc_limit)
    if args.gsm8k:
        result["gsm8k"] = gsm8k_checks(engine, model, tokenizer, args.data_dir, args.gsm8k)
    if args.release:
        started = time.perf_counter()
        engine.close()
        result["close_seconds"] = time.perf_counter() - started
        time.sleep(1.0)
        result["after"] = process_tree()
        result["closed"] = engine.closed
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
