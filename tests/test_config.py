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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["training.bta=0.1"], "training.bta: not a run setting and not a field of the Config"),
        (["training.weight_decay=-1"], None),  # a DPOConfig field: accepted
        (["methods=[scir]", "training.selection=sometimes"], "'scir' trainer's SCIRConfig"),
        (["methods=[scir]", "training.consistency_weight=2.5"], None),
    ],
)
def test_training_section_is_checked_against_the_trainers_config(overrides, message,
                                                                tmp_path) -> None:
    """Keys beyond the run's own training settings are fields of the trainers' Config classes
    (one schema, bounds in the trainer's Config), checked before the run folder is touched."""
    from cream_plugin.loop.pipeline import Pipeline

    config = load_config(overrides=[*overrides, f"output_dir={tmp_path / 'run'}"])
    if message is None:
        Pipeline(config)
        assert config.training.trainer_args
        return
    with pytest.raises(ConfigError, match=message):
        Pipeline(config)
    assert not (tmp_path / "run").exists()


def test_every_setting_is_documented_and_explained(capsys) -> None:
    """Like datasette's check of its hooks: a RunConfig key without a doc string fails, and
    ``cream config --explain`` lists every key with it."""
    from cream_plugin.cli import main
    from cream_plugin.config import explain

    rows = explain()
    undocumented = [key for key, _, _, doc in rows if not doc.strip()]
    assert not undocumented, f"settings without a doc string: {undocumented}"
    assert main(["config", "--explain"]) == 0
    out = capsys.readouterr().out
    for key, *_ in rows:
        assert f"\n{key} (" in f"\n{out}", key
    assert "training.beta (float, default 0.1): DPO beta (paper: 0.1) [> 0.0]" in out


def test_cream_config_prints_the_resolved_config(capsys) -> None:
    import yaml

    from cream_plugin.cli import main

    assert main(["config", "--preset", "smoke", "--set", "training.beta=0.3"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["training"]["beta"] == 0.3 and data["model"]["name"] == "tiny-random"
