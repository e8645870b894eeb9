"""DecodeLoopHFLM returns stock HFLM's generations, with rows stopping at their own stop string."""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")

CONTEXTS = [
    "the cat sat on the mat and then",
    "one",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "hello there, how",
    "numbers: 1 2 3",
    "the the the",
    "why",
]


def _requests(until, max_gen_toks=20):
    from lm_eval.api.instance import Instance

    kwargs = {"until": until, "max_gen_toks": max_gen_toks, "do_sample": False}
    return [Instance("generate_until", {}, (c, dict(kwargs)), i) for i, c in enumerate(CONTEXTS)]


@pytest.fixture
def both_lms(tiny_model, tiny_tokenizer):
    from lm_eval.models.huggingface import HFLM

    from cream_plugin.evaluators.decode_loop_hflm import DecodeLoopHFLM

    stock = HFLM(pretrained=tiny_model, tokenizer=tiny_tokenizer, batch_size=4)
    fast = DecodeLoopHFLM(pretrained=tiny_model, tokenizer=tiny_tokenizer, batch_size=4)
    return stock, fast


def test_generations_equal_stock_and_rows_stop_early(both_lms):
    stock, fast = both_lms
    free = stock.generate_until(_requests([]), disable_tqdm=True)
    # Stop strings taken from the middle of two free generations: some rows stop early.
    stops = [text[6:9] for text in free if len(text.strip()) > 12][:2]
    assert len(stops) == 2, free
    requests = _requests(stops)
    expected = stock.generate_until(requests, disable_tqdm=True)
    got = fast.generate_until(requests, disable_tqdm=True)
    assert got == expected
    assert sum(len(e) < len(f) for e, f in zip(expected, free, strict=True)) >= 2
    assert fast.decode_stats["stream_rows"] == len(CONTEXTS)
    assert fast.decode_stats["stock_batches"] == 0
    assert fast.decode_stats["new_tokens"] < len(CONTEXTS) * 20


def test_unconstrained_generations_equal_stock(both_lms):
    stock, fast = both_lms
    requests = _requests([], max_gen_toks=12)
    assert fast.generate_until(requests, disable_tqdm=True) == stock.generate_until(
        requests, disable_tqdm=True)


def test_what_the_loop_cannot_reproduce_goes_to_the_stock_path(both_lms, tiny_model):
    _, fast = both_lms
    assert fast.fast_path_reason({"do_sample": False, "temperature": 0.0}) is None
    assert fast.fast_path_reason({"do_sample": True, "temperature": 0.7}) == "sampling"
    assert "top_k" in (fast.fast_path_reason({"do_sample": False, "top_k": 5}) or "")
    tiny_model.generation_config.repetition_penalty = 1.3
    assert fast.fast_path_reason({"do_sample": False}) == "generation_config.repetition_penalty"
    out = fast.generate_until(_requests([], max_gen_toks=4)[:2], disable_tqdm=True)
    assert len(out) == 2 and fast.decode_stats["stock_batches"] == 1


@pytest.mark.slow
def test_smollm2_gsm8k_generations_and_scores_equal_stock(data_dir) -> None:
    """The real case the loop exists for: 5-shot GSM8K with SmolLM2, 6 items, batches of 2."""
    import os

    from lm_eval.models.huggingface import HFLM

    from cream_plugin.evaluators.decode_loop_hflm import DecodeLoopHFLM
    from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator
    from cream_plugin.forward.models import load_model, load_tokenizer

    os.environ.setdefault("CREAM_CACHE_DIR", "/tmp/creamcache")
    tokenizer, model = load_tokenizer(), load_model(device="cpu").eval()
    evaluator = LMEvalEvaluator(tasks=["cream_gsm8k"], limit=6, data_dir=data_dir)
    results = {}
    for cls in (DecodeLoopHFLM, HFLM):
        lm = cls(pretrained=model, tokenizer=tokenizer, batch_size=2)  # the stream refills
        generations: list[str] = []
        original = lm.generate_until
        lm.generate_until = lambda reqs, disable_tqdm=False, f=original, g=generations: (
            g.extend(f(reqs, disable_tqdm=True)) or g[-len(reqs):])
        rows = evaluator.evaluate_lm(lm, gen_kwargs={"max_gen_toks": 96}, bootstrap_iters=0)
        results[cls.__name__] = (generations, [(r["metric"], r["value"]) for r in rows])
    assert results["DecodeLoopHFLM"] == results["HFLM"]
    assert len(results["HFLM"][0]) == 6 and any(g.strip() for g in results["HFLM"][0])


def test_models_without_a_preallocatable_cache_use_the_stock_batches(both_lms, tiny_model):
    stock, fast = both_lms
    tiny_model.config.sliding_window = 4  # make_cache falls back to transformers' own cache
    requests = _requests([], max_gen_toks=6)
    assert fast.generate_until(requests, disable_tqdm=True) == stock.generate_until(
        requests, disable_tqdm=True)
    assert "stream_rows" not in fast.decode_stats and fast.decode_stats["fast_batches"] >= 1
