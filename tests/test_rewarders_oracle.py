"""External rewards: a sequence-classification reward model and the benchmark answer key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cream_plugin import get_rewarder
from cream_plugin.data import load_rows
from cream_plugin.rewarders.oracle import (
    AnswerKeyRewarder,
    RewardModelRewarder,
    extract_choice,
    extract_number,
    parse_reference,
    reference_for,
)


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from cream_plugin.testing import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         num_labels=1, pad_token_id=tok.pad_token_id, bos_token_id=None,
                         eos_token_id=tok.eos_token_id)
    folder = tmp_path_factory.mktemp("rm")
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_reward_model_batched_equals_one_by_one(fresh_plugins, reward_model_dir):
    prompts = [[{"role": "user", "content": "What is two plus three?"}], "Name a gas."]
    responses = [["5", "The quick brown fox jumps over the lazy dog."], ["oxygen", "helium"]]
    rewarder = get_rewarder("oracle", path=str(reward_model_dir), batch_size=4, progress=False)
    assert isinstance(rewarder, RewardModelRewarder)
    result = rewarder.score(prompts, responses)
    assert result.rewards.shape == (2, 2) and np.isfinite(result.rewards).all()
    for i, prompt in enumerate(prompts):
        for j, response in enumerate(responses[i]):
            ids = torch.tensor([rewarder.render(prompt, response)])
            with torch.no_grad():
                single = float(rewarder.model(input_ids=ids).logits[0, 0])
            assert result.rewards[i, j] == pytest.approx(single, abs=1e-4)
    # Its own chat template renders the conversation, the response included.
    text = rewarder.tokenizer.decode(rewarder.render("Name a gas.", "oxygen"))
    assert "<|im_start|>user\nName a gas.<|im_end|>" in text and "assistant\noxygen" in text


def test_reward_model_bad_path_is_a_clear_error(tmp_path):
    from cream_plugin.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="could not load reward model"):
        RewardModelRewarder(str(tmp_path / "nothing"))


@pytest.mark.parametrize(("response", "letter"), [
    ("The answer is B.", "B"),
    ("Answer: (C) nitrogen", "C"),
    ("B. carbon dioxide", "B"),
    ("(D)", "D"),
    ("A", "A"),
    ("I think A is wrong... the answer is D", "D"),
    ("A plant absorbs carbon dioxide.", None),
    ("no idea", None),
])
def test_extract_choice(response, letter):
    assert extract_choice(response) == letter


@pytest.mark.parametrize(("response", "number"), [
    ("48/2 = 24, so 48 + 24 = 72.\n#### 72", "72"),
    ("The answer is $1,250.", "1250"),
    ("She earns 12 per hour, 0.2 per minute, so 10", "10"),
    ("Answer: -3.5", "-3.5"),
    ("none", None),
])
def test_extract_number(response, number):
    assert extract_number(response) == number


def test_references_from_local_benchmark_rows(data_dir):
    arc = load_rows("arc_easy", "train", data_dir)[0]
    assert reference_for("arc_easy", arc) == f"choice:{arc['answerKey']}"
    obqa = load_rows("openbookqa", "train", data_dir)[0]
    assert reference_for("openbookqa", obqa) == "choice:D"
    gsm = load_rows("gsm8k", "train", data_dir)[0]
    assert reference_for("gsm8k", gsm) == "number:72"
    assert parse_reference(gsm["answer"]) == ("number", "72")
    assert parse_reference("b") == ("choice", "B")
    with pytest.raises(ValueError, match="no answer key"):
        reference_for("social_iqa", {})


def test_answer_key_scores_correctness(fresh_plugins):
    rewarder = get_rewarder("answer-key")
    assert isinstance(rewarder, AnswerKeyRewarder)
    result = rewarder.score(
        ["Which gas? A. oxygen B. carbon dioxide", "2+3?", "Unlabelled prompt"],
        [["The answer is B", "A. oxygen", "hmm"], ["#### 5", "It is 6", "5.0"], ["x", "y", "z"]],
        references=["choice:B", "number:5", None],
    )
    np.testing.assert_array_equal(result.rewards[:2], [[1, 0, 0], [1, 0, 1]])
    assert np.isnan(result.rewards[2]).all()
    assert result.counts == {"correct": 3, "wrong": 2, "no_answer": 1, "no_reference": 3}
    with pytest.raises(ValueError, match="needs a gold answer"):
        rewarder.score(["q"], [["a"]])
