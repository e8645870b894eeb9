"""SFT on the seed set: prompt tokens masked with -100 (not the pad id), loss goes down, saved."""

from __future__ import annotations

import pytest

from cream_plugin.errors import DataError
from cream_plugin.trainers.sft import build_sft_trainer, run_sft, to_prompt_completion

EXAMPLES = [
    {
        "id": "a",
        "messages": [
            {"role": "user", "content": "What is two plus three?"},
            {"role": "assistant", "content": "Answer: 5"},
        ],
    },
    {
        "id": "b",
        "messages": [
            {"role": "user", "content": "Which gas do plants absorb? A. oxygen B. carbon dioxide"},
            {"role": "assistant", "content": "B. carbon dioxide"},
        ],
    },
    {
        "id": "c",
        "messages": [
            {"role": "system", "content": "Please answer step by step."},
            {"role": "user", "content": "Write a short poem about the sea."},
            {"role": "assistant", "content": "The waves roll in and out again."},
        ],
    },
]


def _mean_loss(model, batch):
    import torch

    with torch.no_grad():
        return float(model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss)


def test_prompt_tokens_are_masked_and_eos_is_learned(tiny_model, tiny_tokenizer, tmp_path):
    trainer = build_sft_trainer(
        tiny_model,
        tiny_tokenizer,
        EXAMPLES,
        tmp_path,
        epochs=1,
        learning_rate=1e-3,
        batch_size=3,
        max_length=128,
        seed=0,
        progress=False,
    )
    features = [trainer.train_dataset[i] for i in range(len(EXAMPLES))]
    batch = trainer.data_collator(features)
    eos = tiny_tokenizer.eos_token_id
    assert eos == tiny_tokenizer.pad_token_id  # the case the reference code got wrong
    for row, example in enumerate(EXAMPLES):
        ids = batch["input_ids"][row].tolist()
        labels = batch["labels"][row].tolist()
        mask = batch["attention_mask"][row].tolist()
        prompt_text = tiny_tokenizer.apply_chat_template(
            example["messages"][:-1], add_generation_prompt=True, tokenize=False
        )
        n_prompt = len(tiny_tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        assert all(label == -100 for label in labels[:n_prompt])
        assert eos not in [label for label in labels[:n_prompt]]
        trained = [(i, label) for i, label in enumerate(labels) if label != -100]
        assert trained and trained[0][0] == n_prompt
        assert all(ids[i] == label for i, label in trained)
        answer = tiny_tokenizer.decode([label for _, label in trained], skip_special_tokens=True)
        assert example["messages"][-1]["content"] in answer
        assert eos in [label for _, label in trained]  # the end-of-turn token is a target
        # padding (which is also the eos id) is never a target
        assert all(labels[i] == -100 for i, m in enumerate(mask) if m == 0)


def test_run_sft_lowers_loss_and_saves(tiny_model, tiny_tokenizer, tmp_path):
    probe = build_sft_trainer(
        tiny_model,
        tiny_tokenizer,
        EXAMPLES,
        tmp_path / "probe",
        epochs=1,
        learning_rate=1e-3,
        batch_size=3,
        max_length=128,
        seed=0,
        progress=False,
    )
    batch = probe.data_collator([probe.train_dataset[i] for i in range(len(EXAMPLES))])
    before = _mean_loss(tiny_model, batch)
    out = tmp_path / "sft"
    model = run_sft(
        tiny_model,
        tiny_tokenizer,
        EXAMPLES,
        out,
        epochs=8,
        learning_rate=3e-3,
        batch_size=3,
        max_length=128,
        seed=0,
        progress=False,
    )
    after = _mean_loss(model, batch)
    assert after < before - 0.5, (before, after)
    assert (out / "model.safetensors").is_file()
    assert (out / "tokenizer.json").is_file()
    assert not (out / "trainer").exists()


def test_bad_examples_are_named():
    with pytest.raises(DataError, match="id x"):
        to_prompt_completion([{"id": "x", "messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DataError, match="last message"):
        to_prompt_completion(
            [
                {
                    "id": "y",
                    "messages": [
                        {"role": "assistant", "content": "a"},
                        {"role": "user", "content": "hi"},
                    ],
                }
            ]
        )
    with pytest.raises(DataError, match="no SFT examples"):
        to_prompt_completion([])
