"""Benchmark: the rubric judge's modes side by side on the same sampled responses.

Run:  python benchmarks/bench_judge_modes.py RUN_DIR [--prompts 48] [--subset 8] [--out FILE]

RUN_DIR is a finished (or partly finished) run folder, e.g. of
``cream run --preset demo --method srlm``: its sampled responses (every ``samples`` stage, in
iteration order, the first ``--prompts`` prompts) are judged by its SFT model ``M1`` in each mode:

- ``probability``: forced ``Score:`` prefix, expected score over the score tokens;
- ``probability, prefix 'Score: '``: the prefix ending in a space (the default since this
  benchmark);
- ``justify-probability`` (on the first ``--subset`` prompts: it generates);
- ``generate`` (generate-and-parse, on the first ``--subset`` prompts);
- the pair judge of SCIR (``pairwise-judge``), whose verdict is also read from logits, with the
  probability mass on its two verdict tokens.

Per mode: label accuracy of the best-vs-worst pairs against the answer key (Wilson 95% interval,
exact binomial test against 0.5, n = discordant pairs, the minimum detectable effect at 80%
power), pairs formed, unparsed verdicts, mean valid-token mass, and seconds per judged response
(wall time of the scoring call / responses; the subset modes are timed on their subset).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_samples(run_dir: Path, limit: int) -> list[dict[str, Any]]:
    """The run's sampled rows (prompt, responses, reference), iteration order, first ``limit``."""
    from cream_plugin.loop.artifacts import Stage, read_manifests

    names = sorted((m.get("iteration", 0), name) for name, m in read_manifests(run_dir).items()
                   if m.get("step") == "sample" and m.get("complete", True))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _, name in names:
        for row in Stage(run_dir, name, "").read_rows():
            if str(row["prompt_id"]) not in seen:
                seen.add(str(row["prompt_id"]))
                rows.append(row)
    if not rows:
        raise SystemExit(f"{run_dir}: no samples stage yet")
    return rows[:limit]


def min_detectable(n: int) -> float:
    """Smallest true accuracy - 0.5 a two-sided 5% test detects with 80% power at n pairs."""
    return (1.959964 + 0.841621) * 0.5 / math.sqrt(n) if n else math.nan


def measure(name: str, rewards: np.ndarray, correct: np.ndarray, seconds: float,
            responses: int, counts: dict[str, Any], mass: float | None) -> dict[str, Any]:
    from cream_plugin.instruments.reward_quality import label_accuracy

    acc = label_accuracy(rewards, correct)
    est = acc.accuracy
    return {
        "mode": name, "prompts": acc.prompts, "responses": responses,
        "pairs": acc.pairs, "discordant_pairs": acc.discordant_pairs,
        "label_accuracy": est.value, "ci_low": est.low, "ci_high": est.high,
        "p_vs_chance": est.p_value, "mde": min_detectable(acc.discordant_pairs),
        "unparsed": counts.get("unparsed_judgements"),
        "judgements": counts.get("judgements"), "mean_valid_mass": mass,
        "seconds": seconds, "seconds_per_response": seconds / max(responses, 1),
    }


def run_judge(model: Any, tokenizer: Any, rows: list[dict[str, Any]], correct: np.ndarray,
              name: str, batch_size: int, **options: Any) -> tuple[dict[str, Any], Any]:
    from cream_plugin.rewarders.judge import JudgeRewarder

    judge = JudgeRewarder(model, tokenizer, batch_size=batch_size, progress=False, **options)
    start = time.perf_counter()
    result = judge.score([r["prompt"] for r in rows], [r["responses"] for r in rows])
    seconds = time.perf_counter() - start
    mass = result.details.get("valid_mass")
    row = measure(name, result.rewards, correct, seconds, int(result.rewards.size),
                  dict(result.counts), float(np.mean(mass)) if mass else None)
    if "argmax" in result.details:  # the same distribution's 5-point verdict: what ties cost
        arg = np.array(result.details["argmax"], dtype=float)
        row["argmax_tied_prompts"] = result.counts.get("argmax_tied_prompts")
        row["argmax_reward"] = measure(f"{name} (argmax only)", arg, correct, 0.0,
                                       int(arg.size), {}, None)
    return row, result


def pair_judge_mass(model: Any, tokenizer: Any, rows: list[dict[str, Any]],
                    batch_size: int) -> float:
    """Mean full-vocabulary probability of the pair judge's two verdict tokens, first pair of
    responses of each prompt, both orders."""
    from cream_plugin.rewarders.next_token import next_token_log_probs
    from cream_plugin.rewarders.pairwise_judge import encode_both_orders, verdict_token_ids

    ids = verdict_token_ids(tokenizer)
    forward, backward = encode_both_orders(
        tokenizer, [r["prompt"] for r in rows], [r["responses"][0] for r in rows],
        [r["responses"][1] for r in rows], max_response_tokens=512)
    lp = next_token_log_probs(model, forward + backward, list(ids), int(tokenizer.pad_token_id),
                              batch_size=batch_size)
    return float(np.exp(lp.double().numpy()).sum(axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--subset", type=int, default=8,
                        help="prompts for the generating modes (generate, justify-probability)")
    parser.add_argument("--pair-prompts", type=int, default=None,
                        help="prompts for the pair judge (N(N-1) forwards a prompt; default all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--judge-tokens", type=int, default=192,
                        help="max new tokens of a generated judgement / justification")
    parser.add_argument("--skip", default="", help="comma-separated modes to leave out: "
                        "probability, generate, justify-probability, pairwise, "
                        "probability-space")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cream_plugin.instruments.reward_quality import answer_key_correctness
    from cream_plugin.rewarders.pairwise_judge import PairwiseJudgeRewarder

    torch.manual_seed(0)
    rows = load_samples(args.run_dir, args.prompts)
    correct = answer_key_correctness([r["prompt"] for r in rows], [r["responses"] for r in rows],
                                     [r.get("reference") for r in rows])
    folder = args.run_dir / "M1"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    skip = set(filter(None, args.skip.split(",")))
    subset, sub_correct = rows[:args.subset], correct[:args.subset]
    results: list[dict[str, Any]] = []
    plan = [  # (key for --skip, label, prompts, correctness, judge options)
        ("probability", "probability, prefix 'Score:'", rows, correct,
         {"mode": "probability", "score_prefix": "Score:"}),
        ("generate", "generate", subset, sub_correct,
         {"mode": "generate", "max_new_tokens": args.judge_tokens}),
        ("justify-probability", "justify-probability", subset, sub_correct,
         {"mode": "justify-probability", "max_new_tokens": args.judge_tokens}),
    ]
    variant = ("probability-space", "probability, prefix 'Score: '", rows, correct,
               {"mode": "probability", "score_prefix": "Score: "})
    for key, name, part, part_correct, options in plan:
        if key in skip:
            continue
        row, _ = run_judge(model, tokenizer, part, part_correct, name, args.batch_size,
                           **options)
        results.append(row)
        print(json.dumps(row), flush=True)
    if "pairwise" not in skip:
        pair = PairwiseJudgeRewarder(model, tokenizer, batch_size=args.batch_size,
                                     progress=False)
        pair_rows = rows[:args.pair_prompts] if args.pair_prompts else rows
        start = time.perf_counter()
        res = pair.score([r["prompt"] for r in pair_rows], [r["responses"] for r in pair_rows])
        seconds = time.perf_counter() - start
        mass = pair_judge_mass(model, tokenizer, pair_rows, args.batch_size)
        row = measure("pairwise-judge (SCIR)", res.rewards, correct[:len(pair_rows)], seconds,
                      int(res.rewards.size), dict(res.counts), mass)
        results.append(row)
        print(json.dumps(row), flush=True)
    if variant[0] not in skip:
        row, _ = run_judge(model, tokenizer, variant[2], variant[3], variant[1],
                           args.batch_size, **variant[4])
        results.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nprompts {len(rows)} (subset {len(subset)}), responses per prompt "
          f"{len(rows[0]['responses'])}, pool accuracy {np.nanmean(correct):.3f}")
    print("| mode | prompts | pairs | label accuracy [95% CI] (n discordant) | MDE | unparsed "
          "| mean valid mass | s / response |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        for line in (r, r.get("argmax_reward")):
            if not line:
                continue
            acc = ("undefined" if line["label_accuracy"] is None
                   or not np.isfinite(line["label_accuracy"]) else
                   f"{line['label_accuracy']:.2f} [{line['ci_low']:.2f}, {line['ci_high']:.2f}]")
            mass = "-" if line["mean_valid_mass"] is None else f"{line['mean_valid_mass']:.2g}"
            unparsed = ("-" if line["unparsed"] is None
                        else f"{line['unparsed']} / {line['judgements']}")
            print(f"| {line['mode']} | {line['prompts']} | {line['pairs']} | {acc} "
                  f"(n={line['discordant_pairs']}) | {line['mde']:.2f} | {unparsed} | {mass} "
                  f"| {line['seconds_per_response']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
