"""``cream sample``: N seeded responses per prompt from a model, written as JSON lines."""

from __future__ import annotations

import argparse
from typing import Any

from cream_plugin.commands import add_output_option

HELP = (
    "Sample N responses per prompt (rows {prompt_id, prompt}) into rows "
    "{prompt_id, prompt, responses}."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model folder, .gguf file, Hub id or built-in name"
    )
    parser.add_argument("--prompts", required=True, help="JSON-lines file of {prompt_id, prompt}")
    add_output_option(parser, "output JSON-lines file", required=True)
    parser.add_argument("--n", type=int, default=5, help="responses per prompt (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="hf", help="registered sampler (hf, vllm)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per generate call")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="auto")


def _check_prompt_row(row: dict[str, Any]) -> str | None:
    if "prompt_id" not in row or "prompt" not in row:
        return "needs fields 'prompt_id' and 'prompt'"
    if isinstance(row["prompt_id"], bool) or not isinstance(row["prompt_id"], (str, int)):
        return "field 'prompt_id' must be a string"
    prompt = row["prompt"]
    if isinstance(prompt, str):
        return None
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str) for m in prompt)
    ):
        return None
    return "field 'prompt' must be a string or a list of {role, content} with string values"


def run(args: argparse.Namespace) -> int:
    import math

    from cream_plugin.config import check_device
    from cream_plugin.data import ensure_writable, read_jsonl
    from cream_plugin.errors import ConfigError
    from cream_plugin.loop.row_files import write_rows
    from cream_plugin.plugins.registry import get_sampler

    if args.n < 1:
        raise ConfigError("--n must be >= 1")
    for flag, value in (("--temperature", args.temperature), ("--top-p", args.top_p)):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{flag}: expected a finite number >= 0, got {value}")
    check_device(args.device, "--device")
    rows = read_jsonl(args.prompts, _check_prompt_row)
    ensure_writable(args.output, "--output")
    options = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
    }
    if args.backend == "vllm":
        from cream_plugin.forward.models import resolve_model_path

        path, _ = resolve_model_path(args.model)
        sampler = get_sampler("vllm", model_path=path, **options)
    else:
        from cream_plugin.forward.models import load_model, load_tokenizer

        tokenizer = load_tokenizer(args.model)
        model = load_model(args.model, dtype=args.dtype, device=args.device)
        sampler = get_sampler(
            args.backend, model=model, tokenizer=tokenizer, batch_size=args.batch_size, **options
        )
    from cream_plugin.loop.stages.sample import sample_responses

    responses = sample_responses(sampler, [r["prompt"] for r in rows], args.n, args.seed)
    write_rows(
        args.output,
        [
            {"prompt_id": r["prompt_id"], "prompt": r["prompt"], "responses": resp}
            for r, resp in zip(rows, responses, strict=True)
        ],
    )
    empty = sum(1 for resp in responses for text in resp if not text)
    print(f"wrote {len(rows)} prompts x {args.n} responses to {args.output} ({empty} empty)")
    return 0

