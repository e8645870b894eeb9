"""CREAMTrainer: the loss and its gradients against TRL's DPOTrainer, the reference choice, the
consistency column's path through TRL, logging, evaluation, gradient accumulation and PEFT."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
import torch

from cream_plugin.testing import perturbed_copy

pytest.importorskip("trl")

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from cream_plugin.errors import ConfigError, DataError
from cream_plugin.testing import PAIR_BAD as BAD
from cream_plugin.testing import PAIR_GOOD as GOOD
from cream_plugin.testing import PAIR_PROMPTS as PROMPTS
from cream_plugin.trainers.cream_trainer import CREAMConfig, CREAMTrainer
from cream_plugin.trainers.cream_utils import cream_loss


def make_rows(consistency: list[float | None] | None, swap: bool = False) -> list[dict[str, Any]]:
    rows = []
    for i, prompt in enumerate(PROMPTS):
        chosen, rejected = (BAD[i], GOOD[i]) if swap else (GOOD[i], BAD[i])
        row: dict[str, Any] = {
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "prompt_id": f"p{i}",
            "chosen_reward": 1.0,
            "rejected_reward": -1.0,
        }
        if consistency is not None:
            row["consistency"] = consistency[i]
        rows.append(row)
    return rows


def config(cls: type = CREAMConfig, tmp_path: Any = "/tmp/cream-test", **kw: Any) -> Any:
    base: dict[str, Any] = {
        "output_dir": str(tmp_path),
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "max_length": 64,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "save_strategy": "no",
        "beta": 0.5,
        "seed": 0,
    }
    base.update(kw)
    return cls(**base)




def loss_and_grads(trainer: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and gradients of one full batch (the whole 4-row data set) via the real data path."""
    batch = next(iter(trainer.get_train_dataloader()))
    batch = trainer._prepare_inputs(batch)
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()
             if p.grad is not None}
    return loss.detach(), grads


def run_pair(cls: type, cfg_cls: type, rows: list[dict[str, Any]], tiny_model: Any,
             tok: Any, tmp_path: Any, **cfg: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    policy = perturbed_copy(tiny_model)
    trainer = cls(model=policy, ref_model=copy.deepcopy(tiny_model),
                  args=config(cfg_cls, tmp_path, **cfg),
                  train_dataset=Dataset.from_list(rows), processing_class=tok)
    return loss_and_grads(trainer)


def assert_close_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    # atol 1e-6: a mixture 0.7 g1 + 0.3 g2 of float32 gradients cancels to ~1e-7 on some entries.
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(
            a[name], b[name], rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}"
        )


# -- the loss ------------------------------------------------------------------------------------


def test_cream_loss_matches_closed_form() -> None:
    h = torch.linspace(-4, 4, 9)
    for c in (0.0, 0.3, 1.0):
        expected = -torch.nn.functional.logsigmoid(h) + (1 - c) * h
        torch.testing.assert_close(cream_loss(h, torch.full_like(h, c)), expected)


@pytest.fixture
def dpo_reference(tiny_model, tiny_tokenizer, tmp_path):
    """TRL DPOTrainer's loss and gradients on the pairs and on the swapped pairs."""
    straight = run_pair(DPOTrainer, DPOConfig, make_rows(None), tiny_model, tiny_tokenizer,
                        tmp_path / "dpo")
    swapped = run_pair(DPOTrainer, DPOConfig, make_rows(None, swap=True), tiny_model,
                       tiny_tokenizer, tmp_path / "dpo-swap")
    return straight, swapped


def test_c1_equals_dpo_and_c0_equals_swapped_dpo(dpo_reference, tiny_model, tiny_tokenizer,
                                                  tmp_path) -> None:
    (dpo_loss, dpo_grads), (swap_loss, swap_grads) = dpo_reference
    assert not math.isclose(dpo_loss.item(), swap_loss.item(), rel_tol=1e-4)
    loss1, grads1 = run_pair(CREAMTrainer, CREAMConfig, make_rows([1.0] * 4), tiny_model,
                             tiny_tokenizer, tmp_path / "c1")
    torch.testing.assert_close(loss1, dpo_loss)
    assert_close_grads(grads1, dpo_grads)
    loss0, grads0 = run_pair(CREAMTrainer, CREAMConfig, make_rows([0.0] * 4), tiny_model,
                             tiny_tokenizer, tmp_path / "c0")
    torch.testing.assert_close(loss0, swap_loss)
    assert_close_grads(grads0, swap_grads)


def test_c07_is_mixture_of_dpo_and_swapped(dpo_reference, tiny_model, tiny_tokenizer,
                                           tmp_path) -> None:
    (dpo_loss, dpo_grads), (swap_loss, swap_grads) = dpo_reference
    loss, grads = run_pair(CREAMTrainer, CREAMConfig, make_rows([0.7] * 4), tiny_model,
                           tiny_tokenizer, tmp_path / "c07")
    torch.testing.assert_close(loss, 0.7 * dpo_loss + 0.3 * swap_loss)
    mixed = {n: 0.7 * dpo_grads[n] + 0.3 * swap_grads[n] for n in dpo_grads}
    assert_close_grads(grads, mixed)


def test_none_mode_is_dpo_whatever_c(dpo_reference, tiny_model, tiny_tokenizer, tmp_path) -> None:
    (dpo_loss, dpo_grads), _ = dpo_reference
    loss, grads = run_pair(CREAMTrainer, CREAMConfig, make_rows([0.0, 0.2, 0.4, 0.9]), tiny_model,
                           tiny_tokenizer, tmp_path / "none", consistency_mode="none")
    torch.testing.assert_close(loss, dpo_loss)
    assert_close_grads(grads, dpo_grads)


def test_average_equals_dynamic_with_mean_c(tiny_model, tiny_tokenizer, tmp_path) -> None:
    cs = [0.1, 0.4, 0.9, 1.0]
    loss_avg, grads_avg = run_pair(CREAMTrainer, CREAMConfig, make_rows(cs), tiny_model,
                                   tiny_tokenizer, tmp_path / "avg", consistency_mode="average")
    loss_dyn, grads_dyn = run_pair(CREAMTrainer, CREAMConfig, make_rows([sum(cs) / 4] * 4),
                                   tiny_model, tiny_tokenizer, tmp_path / "dyn")
    torch.testing.assert_close(loss_avg, loss_dyn)
    assert_close_grads(grads_avg, grads_dyn)
    # and dynamic with the varied C really differs from it
    loss_var, _ = run_pair(CREAMTrainer, CREAMConfig, make_rows(cs), tiny_model, tiny_tokenizer,
                           tmp_path / "var")
    assert not math.isclose(loss_var.item(), loss_dyn.item(), rel_tol=1e-5)


# -- the reference -------------------------------------------------------------------------------


def ref_logps_of(tiny_model: Any, tok: Any, rows: list[dict[str, Any]], tmp_path: Any,
                 ) -> tuple[list[float], list[float]]:
    """Reference log-probs per row, computed by the trainer's own reference path, in row order."""
    trainer = CREAMTrainer(model=copy.deepcopy(tiny_model), ref_model=copy.deepcopy(tiny_model),
                           args=config(tmp_path=tmp_path), train_dataset=Dataset.from_list(rows),
                           processing_class=tok)
    data = trainer._remove_unused_columns(trainer.train_dataset)
    batch = trainer._prepare_inputs(trainer.data_collator([data[i] for i in range(len(data))]))
    chosen, rejected = trainer.compute_ref_log_probs(trainer.ref_model, batch)
    return chosen.tolist(), rejected.tolist()


class ForwardCounter:
    """Counts forwards of a module, split by autograd on/off (a reference forward runs off)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.with_grad = 0
        self.no_grad = 0
        self.kwarg_names: set[str] = set()
        module.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self.kwarg_names.update(kwargs)
        if torch.is_grad_enabled():
            self.with_grad += 1
        else:
            self.no_grad += 1


def test_precomputed_reference_runs_no_reference_forward(tiny_model, tiny_tokenizer, tmp_path,
                                                         monkeypatch) -> None:
    import trl.trainer.dpo_trainer as dpo_module

    rows = make_rows([0.3, 0.6, 0.8, 1.0])
    ref_chosen, ref_rejected = ref_logps_of(tiny_model, tiny_tokenizer, rows, tmp_path / "r")
    for row, c, r in zip(rows, ref_chosen, ref_rejected, strict=True):
        row["ref_chosen_logps"], row["ref_rejected_logps"] = c, r

    def no_reload(*a: Any, **k: Any) -> None:
        raise AssertionError("the reference was reloaded from disk")

    monkeypatch.setattr(dpo_module, "create_model_from_path", no_reload)
    policy = perturbed_copy(tiny_model)
    counter = ForwardCounter(policy)
    trainer = CREAMTrainer(model=policy, args=config(tmp_path=tmp_path / "pre", max_steps=3,
                                                     per_device_train_batch_size=2),
                           train_dataset=Dataset.from_list(rows), processing_class=tiny_tokenizer)
    assert trainer.ref_model is None
    calls: list[int] = []
    monkeypatch.setattr(trainer, "compute_ref_log_probs", lambda *a, **k: calls.append(1))
    trainer.train()
    assert (counter.with_grad, counter.no_grad, calls) == (3, 0, [])  # policy forwards only
    assert "consistency" not in counter.kwarg_names
    assert not counter.kwarg_names & {"ref_chosen_logps", "ref_rejected_logps"}


def test_precomputed_reference_gives_same_loss_as_ref_model(tiny_model, tiny_tokenizer,
                                                            tmp_path) -> None:
    rows = make_rows([0.3, 0.6, 0.8, 1.0])
    with_model = run_pair(CREAMTrainer, CREAMConfig, rows, tiny_model, tiny_tokenizer,
                          tmp_path / "m")
    ref_chosen, ref_rejected = ref_logps_of(tiny_model, tiny_tokenizer, rows, tmp_path / "r")
    for row, c, r in zip(rows, ref_chosen, ref_rejected, strict=True):
        row["ref_chosen_logps"], row["ref_rejected_logps"] = c, r
    trainer = CREAMTrainer(model=perturbed_copy(tiny_model), args=config(tmp_path=tmp_path / "p"),
                           train_dataset=Dataset.from_list(rows), processing_class=tiny_tokenizer)
    loss, grads = loss_and_grads(trainer)
    torch.testing.assert_close(loss, with_model[0])
    assert_close_grads(grads, with_model[1])


def test_no_reference_copies_policy_and_never_reloads(tiny_model, tiny_tokenizer, tmp_path,
                                                      monkeypatch) -> None:
    import trl.trainer.dpo_trainer as dpo_module

    def no_reload(*a: Any, **k: Any) -> None:
        raise AssertionError("the reference was reloaded from disk")

    monkeypatch.setattr(dpo_module, "create_model_from_path", no_reload)
    trainer = CREAMTrainer(model=tiny_model, args=config(tmp_path=tmp_path),
                           train_dataset=Dataset.from_list(make_rows([0.5] * 4)),
                           processing_class=tiny_tokenizer)
    ref = trainer.accelerator.unwrap_model(trainer.ref_model)
    assert ref is not tiny_model
    assert all(not p.requires_grad for p in ref.parameters())
    for (name, a), b in zip(tiny_model.state_dict().items(), ref.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_no_reference_raises_when_copy_disabled(tiny_model, tiny_tokenizer, tmp_path) -> None:
    with pytest.raises(ConfigError, match="no reference"):
        CREAMTrainer(model=tiny_model, args=config(tmp_path=tmp_path, reference_from_policy=False),
                     train_dataset=Dataset.from_list(make_rows([0.5] * 4)),
                     processing_class=tiny_tokenizer)


# -- data checks and the column's path -----------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "match"),
    [
        # rows are numbered from 1, as `cream train` numbers the lines of a pairs file
        ([0.5, 0.5, float("nan"), 0.5], r"train_dataset row 3 \(prompt_id 'p2'\).*\[0, 1\]"),
        ([0.5, 1.5, 0.5, 0.5], r"train_dataset row 2 \(prompt_id 'p1'\).*got 1.5"),
        ([0.5, 0.5, 0.5, -0.1], r"row 4 .*got -0.1"),
        ([0.5, None, 0.5, 0.5], r"train_dataset row 2 \(prompt_id 'p1'\): missing"),
        (None, r"no 'consistency' column"),
    ],
)
def test_bad_consistency_fails_before_training(values, match, tiny_model, tiny_tokenizer,
                                               tmp_path) -> None:
    with pytest.raises(DataError, match=match):
        CREAMTrainer(model=tiny_model, args=config(tmp_path=tmp_path),
                     train_dataset=Dataset.from_list(make_rows(values)),
                     processing_class=tiny_tokenizer)


def test_bad_eval_consistency_names_eval_set(tiny_model, tiny_tokenizer, tmp_path) -> None:
    with pytest.raises(DataError, match=r"eval_dataset row 1 "):
        CREAMTrainer(model=tiny_model, args=config(tmp_path=tmp_path),
                     train_dataset=Dataset.from_list(make_rows([0.5] * 4)),
                     eval_dataset=Dataset.from_list(make_rows([2.0, 0.5, 0.5, 0.5])),
                     processing_class=tiny_tokenizer)


def test_unsupported_options_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="consistency_mode"):
        config(tmp_path=tmp_path, consistency_mode="sometimes")
    with pytest.raises(ConfigError, match="loss_type"):
        config(tmp_path=tmp_path, loss_type="ipo")


def test_consistency_column_survives_filter_and_collator(tiny_model, tiny_tokenizer,
                                                         tmp_path) -> None:
    cs = [0.25, 0.5, 0.75, 1.0]
    trainer = CREAMTrainer(model=tiny_model, args=config(tmp_path=tmp_path),
                           train_dataset=Dataset.from_list(make_rows(cs)),
                           processing_class=tiny_tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["consistency"].dtype == torch.float32
    assert sorted(batch["consistency"].tolist()) == cs
    assert not {"prompt_id", "chosen_reward", "rejected_reward"} & set(batch)


# -- logging, evaluation, accumulation, PEFT -----------------------------------------------------


def test_logs_dpo_and_consistency_metrics_in_train_and_eval(tiny_model, tiny_tokenizer,
                                                            tmp_path) -> None:
    cs = [0.2, 0.4, 0.9, 1.0]
    trainer = CREAMTrainer(
        model=perturbed_copy(tiny_model, seed=4), ref_model=tiny_model,
        args=config(tmp_path=tmp_path, max_steps=1, logging_steps=1, learning_rate=0.0),
        train_dataset=Dataset.from_list(make_rows(cs)),
        eval_dataset=Dataset.from_list(make_rows(cs)), processing_class=tiny_tokenizer)
    trainer.train()
    logged = trainer.state.log_history[0]
    for key in ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "entropy"):
        assert key in logged
    assert logged["consistency/mean"] == pytest.approx(sum(cs) / 4)
    assert logged["consistency/frac_below_0.5"] == pytest.approx(0.5)
    metrics = trainer.evaluate()
    assert metrics["eval_consistency/mean"] == pytest.approx(sum(cs) / 4)
    assert math.isfinite(metrics["eval_loss"])
    # the C-weighted accuracy, recomputed from the policy's and the reference's log-probs
    batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader())))
    trainer.model.eval()
    with torch.no_grad():
        trainer.compute_loss(trainer.model, batch)
        pol_c, pol_r = trainer.compute_ref_log_probs(trainer.model, batch)
        ref_c, ref_r = trainer.compute_ref_log_probs(trainer.ref_model, batch)
    correct = ((pol_c - ref_c) > (pol_r - ref_r)).float()
    c = batch["consistency"]
    assert 0 < correct.sum() < 4  # a case where weighting matters
    expected = (c * correct).sum() / c.sum()
    logged_weighted = trainer._metrics["eval"]["rewards/accuracies_weighted"][-1]
    assert logged_weighted == pytest.approx(expected.item(), rel=1e-6)
    accuracy = trainer._metrics["eval"]["rewards/accuracies"][-1]
    assert accuracy == pytest.approx(correct.mean().item())


def test_gradient_accumulation_matches_full_batch(tiny_model, tiny_tokenizer, tmp_path) -> None:
    rows = make_rows([0.1, 0.5, 0.8, 1.0])

    def train(batch: int, accum: int) -> dict[str, torch.Tensor]:
        model = perturbed_copy(tiny_model)
        trainer = CREAMTrainer(
            model=model, ref_model=copy.deepcopy(tiny_model),
            args=config(tmp_path=tmp_path / f"ga{accum}", per_device_train_batch_size=batch,
                        gradient_accumulation_steps=accum, max_steps=1, optim="sgd",
                        learning_rate=1.0, lr_scheduler_type="constant", max_grad_norm=0.0),
            train_dataset=Dataset.from_list(rows), processing_class=tiny_tokenizer)
        trainer.train()
        return {k: v.clone() for k, v in model.state_dict().items()}

    full, accumulated = train(4, 1), train(2, 2)
    start = perturbed_copy(tiny_model).state_dict()
    assert any(not torch.equal(full[k], start[k]) for k in full)  # it did train
    for name in full:
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-4, atol=1e-6, msg=name)


def test_peft_lora_trains_adapter_with_adapter_off_reference(tiny_model, tiny_tokenizer,
                                                             tmp_path) -> None:
    peft = pytest.importorskip("peft")
    base_before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    trainer = CREAMTrainer(
        model=tiny_model, args=config(tmp_path=tmp_path, max_steps=2, learning_rate=1e-2,
                                      per_device_train_batch_size=2),
        train_dataset=Dataset.from_list(make_rows([0.3, 0.6, 0.8, 1.0])),
        processing_class=tiny_tokenizer,
        peft_config=peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                    init_lora_weights=False))
    assert trainer.ref_model is None  # the reference is the base model, adapter disabled
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
                   if "lora_" in n}
    trainer.train()
    lora_after = dict(trainer.model.named_parameters())
    assert lora_before and any(not torch.equal(v, lora_after[n]) for n, v in lora_before.items())
    base_after = trainer.model.get_base_model().state_dict()
    for name, value in base_before.items():
        key = name if name in base_after else name.replace(".weight", ".base_layer.weight")
        torch.testing.assert_close(base_after[key], value, msg=name)
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])


# -- plugin and CLI -------------------------------------------------------------------------------


def test_registered_as_trainer_plugins(fresh_plugins) -> None:
    from cream_plugin.plugins.registry import get_trainer

    assert get_trainer("cream") == (CREAMTrainer, CREAMConfig)
    assert get_trainer("dpo") == (DPOTrainer, DPOConfig)


def test_lazy_export() -> None:
    import cream_plugin

    assert cream_plugin.CREAMTrainer is CREAMTrainer
    assert issubclass(cream_plugin.CREAMConfig, DPOConfig)


def test_cli_train_saves_a_loadable_model(tiny_model_dir, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    from cream_plugin.cli import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in make_rows([0.2, 0.5, 0.9, 1.0])))
    out = tmp_path / "out"
    code = main(["train", str(pairs), "--model", str(tiny_model_dir), "--output", str(out),
                 "--set", "use_cpu=true", "--set", "max_steps=1", "--set", "max_length=64",
                 "--set", "per_device_train_batch_size=2", "--set", "consistency_mode=average"])
    assert code == 0
    assert AutoModelForCausalLM.from_pretrained(out) is not None


def test_cli_train_rejects_unknown_key(tiny_model_dir, tmp_path, capsys) -> None:
    from cream_plugin.cli import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(make_rows([0.5] * 4)[0]) + "\n")
    code = main(["train", str(pairs), "--model", str(tiny_model_dir), "--output",
                 str(tmp_path / "o"), "--set", "betta=0.1"])
    assert code == 1
    assert "betta" in capsys.readouterr().err


def test_trainer_and_cream_train_number_the_same_bad_row_alike(
    tiny_model, tiny_tokenizer, tiny_model_dir, tmp_path, capsys
) -> None:
    """One convention: rows count from 1, like the pairs file's line numbers, in CREAMTrainer
    and in `cream train`, with the same (prompt_id ...) label."""
    import json

    from cream_plugin.cli import main

    rows = make_rows([0.5, 0.5, 1.5, 0.5])
    with pytest.raises(DataError) as info:
        CREAMTrainer(model=tiny_model, args=config(tmp_path=tmp_path / "a"),
                     train_dataset=Dataset.from_list(rows), processing_class=tiny_tokenizer)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["train", str(pairs), "--model", str(tiny_model_dir), "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 1
    assert "row 3 (prompt_id 'p2')" in str(info.value) and "row 3 (prompt_id 'p2')" in err
    assert "got 1.5" in str(info.value) and "1.5" in err
