"""Shared fixtures: the in-process tiny model, the local data folder, a clean plugin manager."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cream_plugin.plugins import reset_plugin_manager

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from cream_plugin.testing import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture
def tiny_model(tiny_tokenizer):
    from cream_plugin.testing import build_tiny_model

    return build_tiny_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny checkpoint folder (model + tokenizer), built once per session."""
    from cream_plugin.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The local benchmark data (CREAM_DATA_DIR, else ../shared/data beside the repo)."""
    path = Path(os.environ.get("CREAM_DATA_DIR") or SHARED_DATA)
    if not path.is_dir():
        pytest.skip(f"no local data folder at {path}; set CREAM_DATA_DIR")
    return path


@pytest.fixture
def fresh_plugins():
    """A plugin manager rebuilt for this test and forgotten after it."""
    reset_plugin_manager()
    yield
    reset_plugin_manager()
