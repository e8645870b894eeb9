"""Benchmark: the exact-KL pass (two models held, full-vocabulary KL at every completion position)
against one log-prob pass over the same responses, and its agreement with a direct full-logits
computation, on SmolLM2-135M-Instruct and a perturbed copy standing in for M_(t+1).

Run:  python benchmarks/bench_exact_kl.py [--prompts 8 --responses 4 --repeats 3]
Figures are ratios against the log-prob pass measured in the same run (interleaved).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _direct(model_p: Any, model_q: Any, tokenizer: Any, prompt: Any, response: str
            ) -> tuple[float, float]:
    """Summed KL both ways from each model's full logits of one unpadded sequence."""
    import torch
    import torch.nn.functional as F

    from cream_plugin.forward.logprobs import scored_sequence, tokenize_prompt

    ids, start = scored_sequence(tokenizer, prompt, response, tokenize_prompt(tokenizer, prompt),
                                 None)
    x = torch.tensor([ids])
    with torch.no_grad():
        lp = model_p(x).logits[0, start - 1 : len(ids) - 1].float().log_softmax(-1)
        lq = model_q(x).logits[0, start - 1 : len(ids) - 1].float().log_softmax(-1)
    return (F.kl_div(lq, lp, log_target=True, reduction="sum").item(),
            F.kl_div(lp, lq, log_target=True, reduction="sum").item())


def main() -> None:
    import torch
    from bench_rewards import _seed_table

    from cream_plugin.forward.exact_kl import exact_kl
    from cream_plugin.forward.logprobs import response_logps
    from cream_plugin.forward.models import load_model, load_tokenizer
    from cream_plugin.testing import perturbed_copy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--responses", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.002,
                        help="std of the Gaussian noise on every weight of the copy")
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = load_tokenizer()
    old = load_model(device="cpu").eval()
    new = perturbed_copy(old, scale=args.noise).eval()
    prompts, responses = _seed_table(args.prompts, args.responses)
    kw: dict[str, Any] = dict(batch_size=args.batch_size, progress=False)
    response_logps(old, tokenizer, prompts[:1], responses[:1], **kw)  # warm-up
    times: dict[str, list[float]] = {"log-prob pass (1 model)": [], "exact-KL pass (2 models)": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        logps = response_logps(new, tokenizer, prompts, responses, **kw)
        times["log-prob pass (1 model)"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        table = exact_kl(new, old, tokenizer, prompts, responses, **kw)
        times["exact-KL pass (2 models)"].append(time.perf_counter() - t0)
    tokens = int(table.num_tokens.sum())
    assert tokens == int(logps.num_tokens.sum())
    print(f"SmolLM2-135M vs a copy with weight noise {args.noise}: {args.prompts} prompts x "
          f"{args.responses} responses, {tokens} scored tokens, torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    for name, values in times.items():
        print(f"  {name:26s}: median {statistics.median(values):.2f} s "
              f"({', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(b / a for a, b in zip(*times.values(), strict=True))
    print(f"  exact-KL / log-prob pass time = {ratio:.2f} (two backbones and two heads: ~2)")
    print(f"  per-token KL(new || old) = {table.forward.sum() / tokens:.5f} nats, "
          f"KL(old || new) = {table.reverse.sum() / tokens:.5f}; min per response "
          f"{min(table.forward.min(), table.reverse.min()):.2e} (never negative)")
    err = max(abs(d - t) for i in range(2) for j in range(2)
              for d, t in zip(_direct(new, old, tokenizer, prompts[i], responses[i][j]),
                              (table.forward[i, j], table.reverse[i, j]), strict=True))
    print(f"  max |difference| to torch kl_div on full logits (4 responses): {err:.2e}")


if __name__ == "__main__":
    main()
