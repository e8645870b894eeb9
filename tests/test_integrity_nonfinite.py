"""Issue 12, item 3 (training): non-finite reference log-probs are refused, and real tiny-model
training stops at the first non-finite loss or gradient norm, naming the stage and the step,
before the optimizer applies it and before anything is saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from cream_plugin.errors import DataError
from cream_plugin.testing import PAIR_BAD, PAIR_GOOD, PAIR_PROMPTS
from cream_plugin.trainers.cream_trainer import CREAMConfig, CREAMTrainer
from cream_plugin.trainers.cream_utils import NonFiniteError, NonFiniteGuard


def rows(ref: bool = True) -> list[dict[str, Any]]:
    out = []
    for i, prompt in enumerate(PAIR_PROMPTS):
        row: dict[str, Any] = {
            "prompt_id": f"p{i}", "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": PAIR_GOOD[i]}],
            "rejected": [{"role": "assistant", "content": PAIR_BAD[i]}], "consistency": 0.75}
        if ref:
            row.update(ref_chosen_logps=-20.0, ref_rejected_logps=-21.0)
        out.append(row)
    return out


def config(tmp_path: Path, **kw: Any) -> CREAMConfig:
    base: dict[str, Any] = dict(output_dir=str(tmp_path / "scratch"), use_cpu=True, bf16=False,
                                report_to="none", max_length=64, per_device_train_batch_size=2,
                                save_strategy="no", beta=0.1, seed=0, logging_steps=10)
    base.update(kw)
    return CREAMConfig(**base)


def poison(model: Any) -> None:
    """A NaN in the final norm's weight: every hidden state, hence the loss, is NaN."""
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_cream_trainer_refuses_non_finite_reference_logps(tiny_model, tiny_tokenizer, tmp_path,
                                                          bad) -> None:
    data = rows()
    data[2]["ref_rejected_logps"] = bad
    with pytest.raises(DataError, match=r"train_dataset row 3 \(prompt_id 'p2'\): "
                                        r"'ref_rejected_logps' must be a finite number"):
        CREAMTrainer(model=tiny_model, args=config(tmp_path),
                     train_dataset=Dataset.from_list(data), processing_class=tiny_tokenizer)


def test_nan_loss_stops_training_before_the_first_update(tiny_model, tiny_tokenizer,
                                                         tmp_path) -> None:
    poison(tiny_model)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    trainer = CREAMTrainer(model=tiny_model, args=config(tmp_path),
                           train_dataset=Dataset.from_list(rows()),
                           processing_class=tiny_tokenizer)
    trainer.nonfinite_guard.stage = "M2 (cream)"
    with pytest.raises(NonFiniteError, match=r"^training M2 \(cream\) \(CREAMTrainer\): step 1 "
                                             r"of \d+: the loss is nan"):
        trainer.train()
    after = trainer.model.state_dict()
    for name, value in before.items():  # the optimizer never ran: no weight changed
        assert torch.equal(value, after[name]) or (value.isnan() == after[name].isnan()).all()
    assert trainer.state.global_step == 0


def test_huge_learning_rate_stops_at_the_first_bad_step(tiny_model, tiny_tokenizer,
                                                        tmp_path) -> None:
    trainer = CREAMTrainer(model=tiny_model,
                           args=config(tmp_path, learning_rate=1e30, num_train_epochs=3,
                                       max_grad_norm=0.0, warmup_steps=0),
                           train_dataset=Dataset.from_list(rows()),
                           processing_class=tiny_tokenizer)
    with pytest.raises(NonFiniteError) as info:
        trainer.train()
    message = str(info.value)
    step = int(message.split("step ")[1].split()[0])
    assert step >= 2 and "CREAMTrainer" in message and "nothing was saved" in message
    assert trainer.state.global_step == step - 1  # stopped before that step's update


def test_scir_trainer_is_guarded(tiny_model, tiny_tokenizer, tmp_path) -> None:
    from cream_plugin.trainers.scir_trainer import SCIRConfig, SCIRTrainer

    poison(tiny_model)
    args = SCIRConfig(output_dir=str(tmp_path / "s"), use_cpu=True, bf16=False, report_to="none",
                      max_length=64, per_device_train_batch_size=2, save_strategy="no")
    data = [{k: v for k, v in r.items() if k != "consistency"} for r in rows()]
    trainer = SCIRTrainer(model=tiny_model, args=args, train_dataset=Dataset.from_list(data),
                          processing_class=tiny_tokenizer)
    with pytest.raises(NonFiniteError,
                       match=r"^training SCIRTrainer: step 1 of \d+: the loss is nan"):
        trainer.train()


def test_sft_trainer_is_guarded(tiny_model, tiny_tokenizer, tmp_path) -> None:
    from cream_plugin.trainers.sft import build_sft_trainer

    poison(tiny_model)
    examples = [{"messages": [{"role": "user", "content": p},
                              {"role": "assistant", "content": g}]}
                for p, g in zip(PAIR_PROMPTS, PAIR_GOOD, strict=True)]
    trainer = build_sft_trainer(tiny_model, tiny_tokenizer, examples, tmp_path / "sft",
                                epochs=1, batch_size=2, max_length=64, progress=False)
    with pytest.raises(NonFiniteError, match=r"^training SFT \(SFTTrainer\): step 1 "):
        trainer.train()


def test_guard_attaches_to_a_third_party_trainer(tiny_model, tiny_tokenizer, tmp_path) -> None:
    """What the pipeline does for a plugin's trainer: plain TRL DPOTrainer here."""
    import copy

    from trl import DPOConfig, DPOTrainer

    ref = copy.deepcopy(tiny_model).eval()
    poison(tiny_model)
    args = DPOConfig(output_dir=str(tmp_path / "d"), use_cpu=True, bf16=False, report_to="none",
                     max_length=64, per_device_train_batch_size=2, save_strategy="no")
    data = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows()]
    trainer = DPOTrainer(model=tiny_model, ref_model=ref, args=args,
                         train_dataset=Dataset.from_list(data), processing_class=tiny_tokenizer)
    guard = NonFiniteGuard.attach(trainer, stage="M1 (plugin-dpo)")
    assert NonFiniteGuard.attach(trainer) is guard  # once only
    with pytest.raises(NonFiniteError, match=r"M1 \(plugin-dpo\) \(DPOTrainer\): step 1 "):
        trainer.train()


def test_cream_train_cli_saves_nothing_on_nan(tiny_model_dir, tmp_path, capsys) -> None:
    """``cream train`` on a model whose loss is NaN: one-line error naming the step, no files."""
    from transformers import AutoModelForCausalLM

    from cream_plugin.cli import main

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    poison(model)
    bad_model = tmp_path / "nan-model"
    model.save_pretrained(bad_model)
    for path in tiny_model_dir.iterdir():
        if path.is_file() and not (bad_model / path.name).exists():
            (bad_model / path.name).write_bytes(path.read_bytes())
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    out = tmp_path / "trained"
    code = main(["train", str(pairs), "--model", str(bad_model), "--output", str(out),
                 "--set", "max_length=64"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert "cream train: error: training cream train " in err and "step 1 of" in err
    assert not (out / "model.safetensors").exists()
