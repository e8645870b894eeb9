"""Packed rows and the completion-only LM head (cream_plugin.forward.packing): every per-token
value, loss, gradient and metric equals the padded full-head path within float rounding, for the
fused forward itself, CREAMTrainer (reference forward and precomputed columns, C weighting, LD-DPO),
SCIRTrainer and SFT; a model whose attention ignores packed position_ids falls back to padding."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from cream_plugin.testing import perturbed_copy

pytest.importorskip("trl")

from datasets import Dataset
from trl.trainer import utils as trl_utils
from trl.trainer.utils import add_fused_lm_head

from cream_plugin.forward.fast_forward import FastForward, compact_lm_head, install_fast_forward
from cream_plugin.forward.packing import pack_batch, plan_rows, right_padded_lengths
from cream_plugin.loop.stages.train import trainer_arguments
from cream_plugin.trainers.cream_trainer import CREAMConfig, CREAMTrainer
from cream_plugin.trainers.scir_trainer import SCIRConfig, SCIRTrainer
from cream_plugin.trainers.sft import build_sft_trainer

FIELDS = ("log_probs", "entropy", "mean_logits", "is_top1", "label_mask")
# Responses of very different lengths, so several sequences share a packed row.
ANSWERS = ["Five.", "The answer is five, because two plus three is five, as counted on fingers "
           "one by one.", "Blue.", "Paris, the capital of France, on the river Seine, is the "
           "answer here.", "No.", "Carbon dioxide, which plants take in through their leaves "
           "during the day.", "Yes.", "Tree."]


def pair_rows(n: int = 8) -> list[dict[str, Any]]:
    return [{"prompt": [{"role": "user", "content": f"Question {i}: what is {i} plus 3?"}],
             "chosen": [{"role": "assistant", "content": ANSWERS[i % 8]}],
             "rejected": [{"role": "assistant", "content": ANSWERS[(i * 3 + 1) % 8]}],
             "consistency": (i % 5) / 4} for i in range(n)]




def grads(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5,
                                   msg=lambda m, n=name: f"{n}: {m}")


def padded_batch(tok: Any, lengths: list[int], prompt: int = 5, seed: int = 0,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(3, len(tok), (len(lengths), width), generator=gen)
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, tok.pad_token_id)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :prompt] = -100
    return ids, mask, labels


# -- the pieces ------------------------------------------------------------------------------


def test_plan_rows_fits_every_sequence_once() -> None:
    lengths = [30, 7, 25, 12, 30, 3, 18, 5]
    rows = plan_rows(lengths, 30)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 30 for row in rows)
    assert len(rows) < len(lengths)


def test_right_padded_lengths() -> None:
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert right_padded_lengths(mask) == [3, 2]
    assert right_padded_lengths(torch.tensor([[0, 1, 1], [1, 1, 1]])) is None  # left padding
    assert right_padded_lengths(torch.tensor([[1, 1], [0, 0]])) is None  # an empty row


def test_pack_batch_layout(tiny_tokenizer) -> None:
    ids, mask, labels = padded_batch(tiny_tokenizer, [10, 4, 6], prompt=2)
    packed = pack_batch(ids, [10, 4, 6], labels, pad_id=0)
    assert packed.input_ids.shape == (2, 10)
    assert packed.position_ids.tolist() == [list(range(10)), [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]]
    # a sequence's first token is never a label, so no token predicts across a boundary
    assert (packed.labels[packed.position_ids == 0] == -100).all()
    # unpacking the packed labels (as outputs) gives the padded next-token labels back
    back = packed.unpack(packed.labels[:, 1:])
    expected = labels[:, 1:].masked_fill(mask[:, 1:] == 0, 0)
    assert torch.equal(back, expected)


def test_compact_lm_head_restores_trl() -> None:
    original = trl_utils._use_triton
    with pytest.raises(RuntimeError), compact_lm_head():
        assert trl_utils._use_triton(torch.device("cpu"))
        raise RuntimeError("boom")
    assert trl_utils._use_triton is original


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_fused_forward_values_and_gradients(tiny_model, tiny_tokenizer, attn) -> None:
    tiny_model.config._attn_implementation = attn
    ids, mask, labels = padded_batch(tiny_tokenizer, [12, 30, 7, 25, 18, 30, 5, 9])
    results = {}
    for name, pf, cp in (("padded", False, False), ("compact", False, True),
                         ("packed", True, False), ("both", True, True)):
        model = copy.deepcopy(tiny_model)
        add_fused_lm_head(model, outputs=FIELDS[:4])
        install_fast_forward(model, padding_free=pf, compact_lm_head=cp)
        out = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False,
                    fused_lm_head=True)
        (out.log_probs.sum(1) * torch.arange(1.0, 9.0)).sum().backward()
        results[name] = out, grads(model)
        if pf:
            assert isinstance(model.forward, FastForward) and model.forward.packed_calls == 1
    ref_out, ref_grads = results["padded"]
    for name in ("compact", "packed", "both"):
        out, g = results[name]
        torch.testing.assert_close(out.loss, ref_out.loss)
        for field in FIELDS:
            torch.testing.assert_close(getattr(out, field), getattr(ref_out, field),
                                       rtol=1e-5, atol=1e-5, msg=f"{name} {field}")
        assert_same(g, ref_grads)


def test_model_ignoring_packed_positions_falls_back(tiny_model, tiny_tokenizer, caplog) -> None:
    add_fused_lm_head(tiny_model, outputs=("log_probs",))
    fast = install_fast_forward(tiny_model, padding_free=True, compact_lm_head=False)
    assert fast is not None
    inner = fast.inner

    def no_positions(*args: Any, **kwargs: Any) -> Any:  # attention across the whole row
        kwargs.pop("position_ids", None)
        return inner(*args, **kwargs)

    fast.inner = no_positions
    ids, mask, labels = padded_batch(tiny_tokenizer, [20, 6, 8, 5])
    with torch.no_grad():
        padded = inner(input_ids=ids, attention_mask=mask, labels=labels,
                       fused_lm_head=True).log_probs
        out = tiny_model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    assert "padding_free: packed rows change" in caplog.text
    assert not fast.padding_free and fast.packed_calls == 0
    torch.testing.assert_close(out.log_probs, padded)


def test_install_updates_and_generation_is_untouched(tiny_model, tiny_tokenizer) -> None:
    add_fused_lm_head(tiny_model)
    fast = install_fast_forward(tiny_model, padding_free=True, compact_lm_head=True)
    assert install_fast_forward(tiny_model, padding_free=False, compact_lm_head=True) is fast
    assert not fast.padding_free
    ids = torch.tensor([tiny_tokenizer.encode("What is two plus three?")])
    out = tiny_model.generate(ids, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, ids.size(1) + 3)


# -- the trainers ----------------------------------------------------------------------------


def cream_args(tmp_path: Any, cls: type = CREAMConfig, **kw: Any) -> Any:
    base: dict[str, Any] = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False,
                                report_to="none", max_length=64, per_device_train_batch_size=8,
                                save_strategy="no", beta=0.5, seed=0)
    base.update(kw)
    return cls(**base)


def loss_grads_metrics(trainer: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return loss.detach(), grads(trainer.model), metrics


def both_paths(make: Any) -> tuple[Any, Any]:
    """(today's padded full-head result, the packed compact-head result)."""
    return make(False, False), make(True, True)


def assert_equal_runs(today: Any, fast: Any) -> None:
    torch.testing.assert_close(fast[0], today[0], rtol=1e-5, atol=1e-6)
    assert_same(fast[1], today[1])
    assert fast[2].keys() == today[2].keys()
    for key, value in today[2].items():
        assert fast[2][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("variant", ["reference-forward", "precomputed", "ld_alpha"])
def test_cream_trainer_same_loss_grads_metrics(tiny_model, tiny_tokenizer, tmp_path,
                                               variant) -> None:
    rows = pair_rows()
    extra: dict[str, Any] = {}
    if variant == "precomputed":
        rows = [dict(r, ref_chosen_logps=-40.0 - i, ref_rejected_logps=-35.0 + i)
                for i, r in enumerate(rows)]
    if variant == "ld_alpha":
        extra["ld_alpha"] = 0.5
    policy = perturbed_copy(tiny_model)

    def make(pf: bool, cp: bool) -> Any:
        ref = copy.deepcopy(tiny_model) if variant != "precomputed" else None
        trainer = CREAMTrainer(model=copy.deepcopy(policy), ref_model=ref,
                               args=cream_args(tmp_path / f"{pf}", padding_free=pf,
                                               compact_lm_head=cp, **extra),
                               train_dataset=Dataset.from_list(rows),
                               processing_class=tiny_tokenizer)
        result = loss_grads_metrics(trainer)
        assert trainer.args.padding_free is pf
        if pf:
            assert trainer.model.forward.packed_calls == 1
            assert trainer.model.forward.pair_trees  # each pair's prompt ran once
            if ref is not None:
                assert trainer.ref_model.forward.packed_calls == 1
                assert trainer.ref_model.forward.pair_trees
        return result

    today, fast = both_paths(make)
    assert_equal_runs(today, fast)
    assert today[2]["consistency/mean"] == pytest.approx(sum((i % 5) / 4 for i in range(8)) / 8)


def test_trl_precompute_uses_packed_rows(tiny_model, tiny_tokenizer, tmp_path) -> None:
    def make(pf: bool, cp: bool) -> Any:
        policy = perturbed_copy(tiny_model)
        trainer = CREAMTrainer(model=policy, ref_model=copy.deepcopy(tiny_model),
                               args=cream_args(tmp_path / f"{pf}", padding_free=pf,
                                               compact_lm_head=cp, precompute_ref_log_probs=True),
                               train_dataset=Dataset.from_list(pair_rows()),
                               processing_class=tiny_tokenizer)
        return torch.tensor(trainer.train_dataset["ref_chosen_logps"])

    today, fast = both_paths(make)
    torch.testing.assert_close(fast, today, rtol=1e-5, atol=1e-4)


@pytest.mark.slow  # ~35 s under load: SCIR's judge forwards on top of the DPO pass
def test_scir_trainer_same_loss(tiny_model, tiny_tokenizer, tmp_path, monkeypatch) -> None:
    """Padding-free SCIR also runs its judge pairs as prefix trees: same loss and gradients."""
    import cream_plugin.trainers.scir_judge as scir_judge

    policy = perturbed_copy(tiny_model)
    trees: list[int] = []
    real = scir_judge.paired_verdict_probs

    def counted(*args: Any, **kwargs: Any) -> Any:
        trees.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(scir_judge, "paired_verdict_probs", counted)

    def make(pf: bool, cp: bool) -> Any:
        trees.clear()
        trainer = SCIRTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(tiny_model),
                              args=cream_args(tmp_path / f"{pf}", SCIRConfig, padding_free=pf,
                                              compact_lm_head=cp, selection="all"),
                              train_dataset=Dataset.from_list(pair_rows()),
                              processing_class=tiny_tokenizer)
        result = loss_grads_metrics(trainer)
        assert bool(trees) is pf  # the judge pairs ran as trees exactly when packing was on
        return result

    today, fast = both_paths(make)
    assert_equal_runs(today, fast)


def test_sft_same_loss_grads_metrics(tiny_model, tiny_tokenizer, tmp_path) -> None:
    examples = [{"messages": [{"role": "user", "content": f"Question {i}?"},
                              {"role": "assistant", "content": ANSWERS[i]}]} for i in range(8)]

    def make(pf: bool, cp: bool) -> Any:
        trainer = build_sft_trainer(copy.deepcopy(tiny_model), tiny_tokenizer, examples,
                                    tmp_path / f"{pf}", epochs=1, batch_size=8, max_length=64,
                                    seed=0, progress=False, padding_free=pf,
                                    compact_lm_head=cp)
        result = loss_grads_metrics(trainer)
        if pf:
            assert trainer.model.forward.packed_calls == 1
        return result

    today, fast = both_paths(make)
    assert_equal_runs(today, fast)


def test_plain_dpo_config_gets_no_padding_free(tmp_path) -> None:
    from trl import DPOConfig

    values = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, padding_free=True,
                  compact_lm_head=True)
    assert not trainer_arguments(DPOConfig, values).padding_free
    cream = trainer_arguments(CREAMConfig, values)
    assert cream.padding_free and cream.compact_lm_head
