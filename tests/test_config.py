"""The run config: defaults, YAML + overrides, and every kind of rejected value."""

from __future__ import annotations

import pytest

from cream_plugin.config import RunConfig, load_config
from cream_plugin.errors import ConfigError


def test_defaults_follow_the_paper():
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    assert cfg.training.beta == 0.1 and cfg.training.learning_rate == 1e-6
    assert cfg.sampling.num_responses == 5 and cfg.sampling.temperature == 0.8
    assert cfg.sampling.top_p == 0.95 and cfg.training.warmup_ratio == 0.1
    assert cfg.consistency.metric == "kendall" and cfg.consistency.mode == "dynamic"
    assert cfg.model.trust_remote_code is False


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("iterations: 3\ntraining:\n  beta: 0.2\nsampling:\n  num_responses: 4\n")
    cfg = load_config(path, ["training.beta=0.5", "evaluation.limit=10", "methods=[cream, srlm]"])
    assert cfg.iterations == 3
    assert cfg.training.beta == 0.5
    assert cfg.sampling.num_responses == 4
    assert cfg.evaluation.limit == 10
    assert cfg.methods == ["cream", "srlm"]


def test_ints_widen_to_float_and_none_is_allowed_where_optional():
    cfg = load_config(overrides=["training.num_epochs=2", "evaluation.limit=null"])
    assert cfg.training.num_epochs == 2.0 and isinstance(cfg.training.num_epochs, float)
    assert cfg.evaluation.limit is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.bta=0.1", "unknown key 'training.bta'"),
        ("nonsense=1", "unknown key 'nonsense'"),
        ("training.beta=high", "training.beta: expected a number"),
        ("iterations=2.5", "iterations: expected an integer"),
        ("model.trust_remote_code=yes please", "model.trust_remote_code: expected true or false"),
        ("methods=cream", "methods: expected a list"),
        ("sampling.num_responses=1", "sampling.num_responses: 1 is out of range"),
        ("training.beta=0", "training.beta: 0.0 is out of range (must be > 0.0)"),
        ("sampling.top_p=1.5", "sampling.top_p: 1.5 is out of range (must be <= 1.0)"),
        ("consistency.mode=sometimes", "consistency.mode: 'sometimes' is not one of"),
        ("training=5", "training: expected a mapping"),
        ("training.beta", "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert message in str(info.value)


def test_errors_from_a_file_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sampling:\n  temprature: 0.7\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'sampling\.temprature'"):
        load_config(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(bad)


def test_section_hash_changes_only_with_its_section():
    a = load_config()
    b = load_config(overrides=["training.beta=0.3"])
    assert a.section_hash("sampling", "model") == b.section_hash("sampling", "model")
    assert a.section_hash("training") != b.section_hash("training")
