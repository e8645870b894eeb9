"""A tiny Llama with an in-process tokenizer, so tests (ours and plugins') need no download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A small preference set in the tiny tokenizer's vocabulary: prompt i, its better and worse
# response (trainer and SCIR tests build their pair rows from it).
PAIR_PROMPTS = [
    "What is two plus three?",
    "Which gas do plants absorb?",
    "Write a short poem about the sea.",
    "Please answer step by step.",
]
PAIR_GOOD = ["Answer: 5", "B carbon dioxide", "The waves roll in and out again.", "Answer: B"]
PAIR_BAD = ["The quick brown fox.", "A. oxygen", "Score: 4", "jumps over the lazy dog"]


def offline_env(data_dir: str | Path, cache_dir: str | Path, **extra: str) -> dict[str, str]:
    """The environment of a ``cream`` subprocess in tests: local data, a model cache, no Hub."""
    import os

    return {
        **os.environ,
        "CREAM_DATA_DIR": str(data_dir),
        "CREAM_CACHE_DIR": str(cache_dir),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }


_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: What is two plus three? Answer: 5",
    "Score: 4. The response is helpful, relevant and mostly complete.",
    "Which gas do plants absorb? A. oxygen B. carbon dioxide C. nitrogen D. helium",
    "Write a short poem about the sea. The waves roll in and out again.",
    "Natalia sold clips to 48 of her friends in April. #### 72",
    "user assistant system Please answer step by step. Answer: B",
    "0123456789 + - * / = ( ) , . ? ! : ; ' \"",
]


def build_tiny_tokenizer(vocab_size: int = 512) -> Any:
    """Byte-level BPE trained on a few lines, with a ChatML template; eos = pad = <|im_end|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token=None,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(
    tokenizer: Any, hidden_size: int = 32, num_layers: int = 2, seed: int = 0
) -> Any:
    """A randomly initialised 2-layer Llama sized to the tokenizer, seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_tiny_model(folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny model and tokenizer and save both as a loadable checkpoint folder."""
    folder = Path(folder)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def add_test_plugin(module: Any, name: str) -> None:
    """Register ``module`` as a plugin of the current plugin manager (tests; no entry point)
    and forget the cached components, so the next lookup sees it."""
    from cream_plugin.plugins.manager import get_plugin_manager
    from cream_plugin.plugins.registry import clear_cache

    get_plugin_manager().add_plugin(module, name, "test")
    clear_cache()


ENV_FSDP_ON_CPU = "CREAM_TEST_FSDP_ON_CPU"
"""Testing aid: ``1`` lets accelerate apply FSDP to CPU processes (see allow_fsdp_on_cpu)."""


def allow_fsdp_on_cpu() -> None:
    """Testing aid: make accelerate honour an FSDP launch config in CPU processes (gloo).

    accelerate 1.x sets ``DistributedType.FSDP`` only for accelerator devices; CPU processes
    get ``MULTI_CPU`` (DDP) and the FSDP plugin is dropped. torch's FSDP2 (``fully_shard``)
    itself runs on CPU over gloo, so after accelerate has chosen MULTI_CPU this puts FSDP and
    the plugin back: everything from there on (model preparation, optimizer, state-dict
    gathering) is accelerate's and torch's own FSDP2 code. Used by the 2-process CPU tests;
    never needed on GPUs.
    """
    from accelerate import state
    from accelerate.utils import DistributedType

    cls = state.AcceleratorState
    if getattr(cls, "_cream_fsdp_on_cpu", False):
        return
    original = cls.__init__

    def init(self: Any, *args: Any, fsdp_plugin: Any = None, **kwargs: Any) -> None:
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            # AcceleratorState() copies PartialState's fields on every call: keep FSDP there too.
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    cls.__init__ = init
    cls._cream_fsdp_on_cpu = True


def perturbed_copy(model: Any, scale: float = 0.05, seed: int = 1) -> Any:
    """A copy of ``model`` with seeded Gaussian noise on every weight, so a policy differs
    from its reference in tests."""
    import copy

    import torch

    policy = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return policy
