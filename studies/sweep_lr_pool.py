"""Learning rate x prompts per iteration for the 135M model: how far one CREAM-w/o-RC iteration
moves the policy (per-token KL of M2 against M1 on M2's samples) and what it does to pool
accuracy (M2's responses against M1's on the same held-out prompts, paired per prompt).

Run:  python studies/sweep_lr_pool.py --out runs/sweep [--lrs 1e-6,2e-5,1e-4] [--prompts 12,24,48]

Every cell is a cream run folder driven stage by stage through the pipeline's own stages, so
each cell resumes like a run. M1 is trained once and hard-linked into every cell; the prompt pool
and M1's samples are computed once per pool size. Settings other than the two swept come from
the study preset. Writes OUT/sweep.json and OUT/sweep.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

METHOD = "cream-no-rc"


EXTRA: list[str] = []
"""--set overrides for every cell (e.g. model.name=tiny-random to try the script quickly)."""


def cell_config(prompts: int, lr: float, seed: int) -> Any:
    from cream_plugin.config import load_config

    base = yaml.safe_load((resources.files("cream_plugin") / "presets" / "study.yaml").read_text())
    base.pop("seeds", None)
    return load_config(base=base, overrides=[
        f"methods=[{METHOD}]", "iterations=2", f"seed={seed}",
        f"data.prompts_per_iteration={prompts}", f"training.learning_rate={lr}", *EXTRA,
    ])


def link_tree(src: Path, dst: Path) -> None:
    """A copy of ``src`` whose files are hard links: cream replaces files atomically, never in
    place, so a cell cannot change its base."""
    if not dst.exists():
        shutil.copytree(src, dst, copy_function=os.link)


def pool_accuracy(stage: Any) -> np.ndarray:
    """Per prompt, the share of correct responses (NaN where no response has a gold answer)."""
    from cream_plugin.loop.stages.correctness import correctness_table

    table = correctness_table(stage)
    with np.errstate(invalid="ignore"):
        return np.nanmean(table, axis=1)


def paired_difference(after: np.ndarray, before: np.ndarray) -> dict[str, float]:
    """Per-prompt paired difference after - before: the library's paired t interval, Wilcoxon
    p-value and minimum detectable effect (one seed per cell: a within-seed figure)."""
    from cream_plugin.instruments.paired import paired_continuous

    e = paired_continuous(before, after)
    return {"mean": e.value, "low": e.low, "high": e.high, "n_prompts": e.n,
            "p_wilcoxon": e.p_value, "mde": e.mde}


def run_base(out: Path, prompts: int, seed: int) -> Path:
    """Prompts, M1 (trained once, linked into later bases), M1's samples on both iterations'
    prompts with their correctness and the log-probs iteration 1 needs."""
    from cream_plugin.loop.pipeline import Pipeline
    from cream_plugin.loop.stages.correctness import CorrectnessStage
    from cream_plugin.loop.stages.sample import SampleStage

    base = out / f"base-p{prompts}"
    first = next((p for p in sorted(out.glob("base-p*")) if (p / "M1.manifest.json").exists()),
                 None)
    base.mkdir(parents=True, exist_ok=True)
    if first is not None and first != base and not (base / "M1").exists():
        link_tree(first / "M1", base / "M1")
        os.link(first / "M1.manifest.json", base / "M1.manifest.json")
    pipe = Pipeline(cell_config(prompts, 1e-6, seed), base)
    graph = pipe.graph()
    graph.prompts()
    graph.sft()
    for t in (1, 2):
        scope = "shared/iter1" if t == 1 else "baseline/iter2"
        samples = graph.add(SampleStage(scope, "M1", graph.prompts(), t))
        graph.add(CorrectnessStage(scope, samples, t))
    with pipe.session(adopt=True):
        pipe.run_graph(graph)
    return base


def run_cell(out: Path, base: Path, prompts: int, lr: float, seed: int) -> dict[str, Any]:
    from cream_plugin.loop.pipeline import Pipeline
    from cream_plugin.loop.stages.correctness import CorrectnessStage
    from cream_plugin.loop.stages.sample import SampleStage

    cell = out / f"p{prompts}-lr{lr:g}"
    link_tree(base, cell)
    pipe = Pipeline(cell_config(prompts, lr, seed), cell)
    graph = pipe.graph()
    key = graph.iteration(METHOD, 1)
    base_samples = graph.add(SampleStage("baseline/iter2", "M1", graph.prompts(), 2))
    before_stage = graph.add(CorrectnessStage("baseline/iter2", base_samples, 2))
    samples = graph.sample(METHOD, 2, key)
    after_stage = graph.add(CorrectnessStage(f"{METHOD}/iter2", samples, 2))
    graph.movement(METHOD, 1)
    with pipe.session(adopt=True):
        results = pipe.run_graph(graph)
    before, after = results[before_stage.name], results[after_stage.name]
    movement = json.loads((cell / METHOD / "iter1" / "movement.jsonl").read_text().splitlines()[0])
    moved = movement["evidence"]["movement"][0]["movement"]
    kl = moved["kl_forward"]  # exact, over the whole vocabulary, on M2's samples
    pairs = sum(1 for _ in (cell / METHOD / "iter1" / "pairs.jsonl").open())
    acc_before, acc_after = pool_accuracy(before), pool_accuracy(after)
    return {
        "prompts": prompts, "lr": lr, "pairs": pairs,
        "kl": {k: kl[k] for k in ("value", "low", "high", "n")},
        "mean_abs_delta": moved["mean_abs_delta"]["value"],
        "pool_accuracy_m1": float(np.nanmean(acc_before)),
        "pool_accuracy_m2": float(np.nanmean(acc_after)),
        "difference": paired_difference(acc_after, acc_before),
        "responses": int(np.isfinite(acc_after).sum()) * pipe.config.sampling.num_responses,
        "chars_m1": mean_chars(results[base_samples.name]),
        "chars_m2": mean_chars(results[samples.name]),
    }


def mean_chars(samples: Any) -> float:
    """Mean response length in characters: the implicit reward prefers short responses, and
    a policy that collapses to one-letter answers shows it here first."""
    return float(np.mean([len(r) for row in samples.read_rows() for r in row["responses"]]))


def render(cells: list[dict[str, Any]], seed: int) -> str:
    lines = [
        f"Seed {seed}; one iteration of {METHOD} from the same M1; KL = exact per-token "
        "KL(M2 || M1) on M2's samples (nats, prompt-clustered bootstrap 95% CI); pool "
        "accuracy on the iteration-2 prompts "
        "(held out from training), M1 and M2 sampled on the same prompts, difference paired "
        "per prompt (95% CI); chars = mean response length on those prompts.",
        "",
        "| prompts | lr | pairs | KL (nats/token) | mean abs dlogp | pool acc M1 | pool acc M2 "
        "| M2 - M1 (points) | responses | chars M1 | chars M2 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        k, d = c["kl"], c["difference"]
        lines.append(
            f"| {c['prompts']} | {c['lr']:g} | {c['pairs']} | {k['value']:.3f} "
            f"[{k['low']:.3f}, {k['high']:.3f}] | {c['mean_abs_delta']:.3f} | "
            f"{100 * c['pool_accuracy_m1']:.1f}% | {100 * c['pool_accuracy_m2']:.1f}% | "
            f"{100 * d['mean']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] | "
            f"{c['responses']} | {c['chars_m1']:.0f} | {c['chars_m2']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--lrs", default="1e-6,2e-5,1e-4")
    parser.add_argument("--prompts", default="12,24,48")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    EXTRA.extend(args.set)
    args.out.mkdir(parents=True, exist_ok=True)
    cells = []
    for p in (int(x) for x in args.prompts.split(",")):
        base = run_base(args.out, p, args.seed)
        for lr in (float(x) for x in args.lrs.split(",")):
            cells.append(run_cell(args.out, base, p, lr, args.seed))
            (args.out / "sweep.json").write_text(json.dumps(cells, indent=2))
            (args.out / "sweep.md").write_text(render(cells, args.seed))
            print(render(cells, args.seed), flush=True)


if __name__ == "__main__":
    main()
