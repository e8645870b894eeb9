"""`keep_checkpoints` names models (M1, M2, ..., final, all); the old integer k means M_k."""

from __future__ import annotations

import pytest

from cream_plugin.config import load_config
from cream_plugin.errors import ConfigError
from cream_plugin.loop.pipeline import kept_checkpoints
from cream_plugin.plugins.methods import Method

# sft trains nothing after M1; cream and srlm train M2 and M3 (two iterations)
METHODS = {"sft": Method("sft", None), "cream": Method("cream", "main"),
           "srlm": Method("srlm", "judge")}


def kept(*entries: object) -> set[str]:
    config = load_config(overrides=["iterations=2"])
    config.keep_checkpoints = list(entries)  # type: ignore[arg-type]
    return kept_checkpoints(config, METHODS)


def test_default_keeps_each_final_model_only() -> None:
    config = load_config()
    assert config.keep_checkpoints == ["final"]
    assert kept_checkpoints(config, METHODS) == set()  # the finals are added by the run itself


def test_names_choose_models_not_iterations() -> None:
    assert kept("M2") == {"cream/M2", "srlm/M2"}  # what iteration 1 trained, every method
    assert kept("M1") == {"M1"}  # the shared SFT model
    assert kept("cream/M2", "final") == {"cream/M2"}
    assert kept("all") == {"M1", "cream/M2", "cream/M3", "srlm/M2", "srlm/M3"}


def test_old_integer_spelling_means_the_model_of_that_number() -> None:
    assert kept(1) == {"M1"}
    assert kept(2) == kept("M2")


@pytest.mark.parametrize("entry", ["M4", "sft/M2", "scir/M2", 0])
def test_a_model_this_run_never_trains_is_named(entry: object) -> None:
    with pytest.raises(ConfigError, match=r"keep_checkpoints\[1\]: .* is not a checkpoint of this"):
        kept("final", entry)


@pytest.mark.parametrize("entry", ["last", "iteration1", "m2"])
def test_an_unknown_spelling_lists_the_accepted_ones(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"keep_checkpoints\[0\]: .*expected final, all, M<k>"):
        kept(entry)


def test_config_accepts_names_and_integers_from_overrides() -> None:
    config = load_config(overrides=["keep_checkpoints=[M2, final, 3]"])
    assert config.keep_checkpoints == ["M2", "final", 3]
