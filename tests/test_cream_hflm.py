"""CreamHFLM (lm-eval ``cream-hf``) returns HFLM's log-likelihoods with each context run once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

MC_TASKS = ["cream_arc_easy", "cream_arc_challenge", "cream_openbookqa", "cream_siqa"]
TOLERANCE = 1e-4

# (context, choices): trailing spaces (moved to the continuation by _encode_pair), choices of
# one and several tokens, a repeated choice, a context with a single request, an empty context.
ITEMS = [
    ("Question: What is two plus three?\nAnswer:", [" 5", " four", " the quick brown fox jumps",
                                                    " B", " 5"]),
    ("Which gas do plants absorb? ", ["oxygen", "carbon dioxide", "a", "nitrogen and helium"]),
    ("Q: The quick brown fox jumps\nA:", [" yes", " no"]),
    ("Write a short poem about the sea.", [" The waves roll in and out again."]),
    ("", ["Score: 4", "Answer: B"]),
    ("numbers: 1 2 3 4 5 6 7 8 9 0 + - * / = ( ) , . ? ! : ; the lazy dog sat on the mat",
     [" 7", " and then", " Natalia sold clips to 48 of her friends"]),
    ("hi", [" there", " x", " hello there"]),
]


def _requests(items=ITEMS):
    from lm_eval.api.instance import Instance

    pairs = [(context, choice) for context, choices in items for choice in choices]
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


def _lms(model, tokenizer, batch_size, **kwargs):
    from lm_eval.models.huggingface import HFLM

    from cream_plugin.evaluators.cream_hflm import CreamHFLM

    return (HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, **kwargs),
            CreamHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, **kwargs))


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for (logp, greedy), (want, want_greedy) in zip(got, expected, strict=True):
        assert abs(logp - want) <= TOLERANCE, (logp, want)
        assert greedy == want_greedy


@pytest.mark.parametrize("batch_size", [1, 2, 3, 16])
def test_loglikelihoods_equal_hflm_across_batch_boundaries(tiny_model, tiny_tokenizer,
                                                           batch_size):
    """Batch 2 and 3 split contexts across prefills and a context's choices across passes."""
    stock, fast = _lms(tiny_model, tiny_tokenizer, batch_size)
    requests = _requests()
    _assert_same(fast.loglikelihood(requests, disable_tqdm=True),
                 stock.loglikelihood(requests, disable_tqdm=True))
    # Single-request contexts ("Write a short poem", the empty context's BOS-less split
    # aside) took HFLM's path; everything else shared its context.
    assert fast.shared_stats["stock_requests"] >= 1
    assert fast.shared_stats["shared_requests"] >= len(requests) - 3


def test_greedy_flags_match_where_some_are_true(tiny_model, tiny_tokenizer):
    """Continuations made of the model's own greedy tokens: is_greedy True must agree too."""
    stock, fast = _lms(tiny_model, tiny_tokenizer, 4)
    context = "The quick brown fox"
    greedy = stock.generate_until(
        _gen_request(context, 6), disable_tqdm=True)[0]
    items = [(context, [greedy, greedy[:3] or greedy, " dog", greedy + " x"])]
    expected = stock.loglikelihood(_requests(items), disable_tqdm=True)
    assert any(flag for _, flag in expected)
    _assert_same(fast.loglikelihood(_requests(items), disable_tqdm=True), expected)


def _gen_request(context, max_gen_toks):
    from lm_eval.api.instance import Instance

    kwargs = {"until": [], "max_gen_toks": max_gen_toks, "do_sample": False}
    return [Instance("generate_until", {}, (context, kwargs), 0)]


def test_requests_hflm_would_truncate_take_its_path(tiny_model, tiny_tokenizer):
    """max_length 12: longer sequences are left-truncated by HFLM's own code, the others share."""
    stock, fast = _lms(tiny_model, tiny_tokenizer, 4, max_length=12)
    requests = _requests()
    _assert_same(fast.loglikelihood(requests, disable_tqdm=True),
                 stock.loglikelihood(requests, disable_tqdm=True))
    assert fast.shared_stats["shared_requests"] >= 2
    assert fast.shared_stats["stock_requests"] > 4


def test_rolling_and_unshareable_settings_use_hflm(tiny_model, tiny_tokenizer):
    from lm_eval.api.instance import Instance

    stock, fast = _lms(tiny_model, tiny_tokenizer, 2)
    texts = ["The quick brown fox jumps over the lazy dog. " * 3, "Answer: 5"]
    rolling = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
    got = fast.loglikelihood_rolling(rolling, disable_tqdm=True)
    want = stock.loglikelihood_rolling(rolling, disable_tqdm=True)
    assert got == pytest.approx(want, abs=TOLERANCE)
    assert fast.shared_stats["shared_requests"] == 0

    assert fast.shared_context_reason() is None
    tiny_model.config.sliding_window = 4
    assert fast.shared_context_reason() == "sliding-window or hybrid attention"
    _assert_same(fast.loglikelihood(_requests(), disable_tqdm=True),
                 stock.loglikelihood(_requests(), disable_tqdm=True))
    assert fast.shared_stats["shared_requests"] == 0
    tiny_model.config.sliding_window = None

    from cream_plugin.evaluators.cream_hflm import CreamHFLM

    off = CreamHFLM(pretrained=tiny_model, tokenizer=tiny_tokenizer, batch_size=2,
                    shared_context="False")
    assert off.shared_context_reason() == "shared_context=False"


def test_cache_hook_gets_each_answer_under_its_own_request(tiny_model, tiny_tokenizer):
    """lm-eval's request cache (CachingLM) keys answers by (context, continuation)."""
    _, fast = _lms(tiny_model, tiny_tokenizer, 3)
    seen = {}

    class Hook:
        def add_partial(self, attr, req, res):
            assert attr == "loglikelihood"
            seen[tuple(req)] = res

    fast.set_cache_hook(Hook())
    requests = _requests()
    results = fast.loglikelihood(requests, disable_tqdm=True)
    for request, result in zip(requests, results, strict=True):
        assert seen[request.args] == result


def test_cream_hf_is_registered_and_the_cli_wrapper_loads_it():
    from lm_eval.api.registry import get_model

    from cream_plugin.evaluators.cream_hflm import CreamHFLM

    assert get_model("cream-hf") is CreamHFLM
    code = ("import sys; sys.argv=['lm_eval', '--help']\n"
            "import runpy\n"
            "try:\n    runpy.run_module('cream_plugin.lm_eval_cli', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "from lm_eval.api.registry import get_model\n"
            "print(get_model('cream-hf').__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.stdout.strip().endswith("CreamHFLM")


def _scores(model, tokenizer, data_dir, limit, batch_size, cls):
    from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator

    evaluator = LMEvalEvaluator(tasks=MC_TASKS, limit=limit, data_dir=data_dir)
    lm = cls(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    answers: list = []
    original = lm.loglikelihood
    lm.loglikelihood = lambda reqs, disable_tqdm=False, f=original: (
        answers.extend(f(reqs, disable_tqdm=True)) or answers[-len(reqs):])
    rows = evaluator.evaluate_lm(lm, bootstrap_iters=0)
    return answers, [(r["task"], r["metric"], r["value"]) for r in rows], lm


def test_cream_task_scores_equal_hflm(tiny_model, tiny_tokenizer, data_dir):
    from lm_eval.models.huggingface import HFLM

    from cream_plugin.evaluators.cream_hflm import CreamHFLM

    want, want_rows, _ = _scores(tiny_model, tiny_tokenizer, data_dir, 5, 4, HFLM)
    got, got_rows, lm = _scores(tiny_model, tiny_tokenizer, data_dir, 5, 4, CreamHFLM)
    _assert_same(got, want)
    assert got_rows == want_rows and {m for _, m, _ in got_rows} == {"acc", "acc_norm"}
    assert lm.shared_stats["shared_requests"] == len(got)


def test_evaluator_uses_cream_hflm_unless_both_fast_paths_are_off(tiny_model, tiny_tokenizer,
                                                                  monkeypatch):
    from lm_eval.models.huggingface import HFLM

    from cream_plugin.evaluators.cream_hflm import CreamHFLM
    from cream_plugin.evaluators.lm_eval_evaluator import LMEvalEvaluator

    built = []
    monkeypatch.setattr(LMEvalEvaluator, "evaluate_lm", lambda self, lm, **kw: built.append(lm))
    evaluator = LMEvalEvaluator()
    evaluator.evaluate(tiny_model, tiny_tokenizer)
    evaluator.evaluate(tiny_model, tiny_tokenizer, shared_context=False)
    evaluator.evaluate(tiny_model, tiny_tokenizer, shared_context=False, decode_loop=False)
    assert type(built[0]) is CreamHFLM and built[0].shared_context and built[0].decode_loop
    assert type(built[1]) is CreamHFLM and not built[1].shared_context
    assert type(built[2]) is HFLM


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    [str(Path(sys.executable).with_name("lm_eval"))],  # plain lm_eval: the start-up hook
    [sys.executable, "-m", "cream_plugin.lm_eval_cli"],  # the wrapper, for `python -S` setups
], ids=["lm_eval", "wrapper"])
def test_plain_lm_eval_cli_with_cream_hf(command: list[str], tiny_model_dir: Path,
                                         data_dir: Path, tmp_path: Path) -> None:
    """The documented `lm_eval run --model cream-hf ...` on a saved checkpoint, offline."""
    from cream_plugin.evaluators import TASKS_PATH

    env = {**os.environ, "CREAM_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [*command, "run", "--model", "cream-hf",
         "--model_args", f"pretrained={tiny_model_dir}", "--tasks", "cream_benchmarks",
         "--include_path", TASKS_PATH, "--limit", "3", "--gen_kwargs", "max_gen_toks=8",
         "--output_path", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = next((tmp_path / "out").rglob("results_*.json"))
    results = json.loads(result.read_text())["results"]
    assert {*MC_TASKS, "cream_gsm8k"} <= set(results)


@pytest.mark.slow
def test_smollm2_mc_loglikelihoods_and_scores_equal_hflm(data_dir) -> None:
    """SmolLM2-135M-Instruct, 6 items of each multiple-choice task, batch 4."""
    from lm_eval.models.huggingface import HFLM

    from cream_plugin.evaluators.cream_hflm import CreamHFLM
    from cream_plugin.forward.models import load_model, load_tokenizer

    os.environ.setdefault("CREAM_CACHE_DIR", "/tmp/creamcache")
    tokenizer, model = load_tokenizer(), load_model(device="cpu").eval()
    want, want_rows, _ = _scores(model, tokenizer, data_dir, 6, 4, HFLM)
    got, got_rows, lm = _scores(model, tokenizer, data_dir, 6, 4, CreamHFLM)
    _assert_same(got, want)
    assert got_rows == want_rows
    assert lm.shared_stats["shared_requests"] == len(got) > 6 * 4 * 2
