"""Issue 12, items 3 and 7 (configuration): NaN and infinities never pass validation, numeric
strings are numbers, device strings are checked, unreadable config files are one-line errors; a
property-based test over random configs and overrides finds no traceback."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import typing

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cream_plugin.config import RunConfig, load_config
from cream_plugin.errors import ConfigError, CreamError


def float_keys() -> list[str]:
    """Every float setting of the run config, as a dotted key (found from the dataclasses)."""
    keys = []
    hints = typing.get_type_hints(RunConfig)
    for section in dataclasses.fields(RunConfig):
        tp = hints[section.name]
        if not dataclasses.is_dataclass(tp):
            continue
        for name, ann in typing.get_type_hints(tp).items():
            if ann is float or float in typing.get_args(ann):
                keys.append(f"{section.name}.{name}")
    return keys


FLOAT_KEYS = float_keys()


def test_the_float_keys_include_those_of_the_issue() -> None:
    for key in ("training.beta", "sampling.temperature", "sampling.top_p",
                "training.warmup_ratio"):
        assert key in FLOAT_KEYS


@pytest.mark.parametrize("key", ["confidence_threshold", "dpo_weight", "side_margin"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_trainer_settings_are_refused_before_work(key: str, value: str,
                                                             tmp_path) -> None:
    """SCIR's thresholds are SCIRConfig fields written in the training section; they are
    checked by preflight (before the run folder exists) like the run's own floats."""
    from cream_plugin.loop.pipeline import Pipeline

    config = load_config(overrides=[f"training.{key}={value}", "methods=[scir]",
                                    f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=f"training.{key}"):
        Pipeline(config)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400", "'nan'", "'-inf'"])
def test_non_finite_floats_are_refused_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: .*finite"):
        load_config(overrides=[f"{key}={value}"])


def test_numeric_strings_are_numbers() -> None:
    # YAML 1.1 reads 1e-6 (no dot) as the string "1e-6".
    assert yaml.safe_load("1e-6") == "1e-6"
    cfg = load_config(overrides=["training.learning_rate=1e-6", "training.beta=5E-2"])
    assert cfg.training.learning_rate == 1e-6 and cfg.training.beta == 0.05
    with pytest.raises(ConfigError, match=r"training\.beta: expected a number, got 'abc'"):
        load_config(overrides=["training.beta=abc"])


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_device_strings_accepted(device: str) -> None:
    assert load_config(overrides=[f"model.device={device}"]).model.device == device


@pytest.mark.parametrize("device", ["gpu7", "cuda:", "cuda:x", "CPU", "", "'cpu '"])
def test_device_strings_refused(device: str) -> None:
    with pytest.raises(ConfigError, match=r"^model\.device: "):
        load_config(overrides=[f"model.device={device}"])


def test_config_file_that_is_a_folder(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_config_file_that_is_not_utf8(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"training:\n  beta: 0.1 # \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_override_that_is_not_yaml() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(overrides=["training.beta=[1,"])


def test_non_string_keys_are_a_config_error(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("1: 2\nfoo: 3\ntraining: {3: 4}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)


# -- property: any config and overrides -> a RunConfig or a ConfigError, never a traceback ------

SECTIONS = [f.name for f in dataclasses.fields(RunConfig)]
KEYS = SECTIONS + [
    f"{section}.{name}" for section in SECTIONS
    if dataclasses.is_dataclass(typing.get_type_hints(RunConfig)[section])
    for name in typing.get_type_hints(typing.get_type_hints(RunConfig)[section])
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
    st.sampled_from(["1e-6", "1e400", "nan", ".inf", "cuda:1", "gpu7", "[1,", "{a: 1}", "~",
                     "2020-01-01", "!!binary aGk=", "&a x", "*a", "- - -"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=6),
                                                           st.sampled_from(KEYS)), inner,
                                                 max_size=3)), max_leaves=6)
OVERRIDE_TEXT = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS),
              st.one_of(st.text(max_size=12), SCALARS.map(str))),
    st.text(max_size=20),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=5)), VALUES,
                            max_size=4),
       overrides=st.lists(OVERRIDE_TEXT, max_size=3))
def test_property_load_config_never_raises_anything_else(base, overrides) -> None:
    try:
        cfg = load_config(base=base, overrides=overrides)
    except CreamError as exc:
        assert "\n" not in str(exc).strip() or "YAML" in str(exc)
        return
    assert isinstance(cfg, RunConfig)
    cfg.section_hash("training", "model")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=60), st.binary(max_size=40).map(
    lambda b: b.decode("latin-1"))), raw=st.binary(max_size=30))
def test_property_any_config_file_is_a_config_or_an_error(tmp_path_factory, text, raw) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass") + raw)
    with contextlib.suppress(CreamError):
        load_config(path)
