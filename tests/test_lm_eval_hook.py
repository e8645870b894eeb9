"""A plain ``lm_eval --model cream-hf``: the start-up hook registers the model lazily.

The hook runs in every Python process of the environment, so these tests check that it imports
nothing heavy, registers only when lm-eval's registry loads, can be turned off, and never breaks
lm-eval when the registry is not what it expects.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from lm_eval.api.registry import Registry

import _cream_lm_eval_hook as hook

PROBE = (
    "import sys; import lm_eval.models; from lm_eval.api.registry import model_registry as r;"
    "print(r._objs.get('cream-hf', 'absent'));"
    "print('cream_plugin' in sys.modules)"
)


def _python(code: str, **env: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_installed_environment_registers_cream_hf_lazily() -> None:
    placeholder, ours_imported = _python(PROBE)
    assert placeholder == "cream_plugin.evaluators.cream_hflm:CreamHFLM"
    assert ours_imported == "False"  # nothing of cream-plugin came with lm-eval's models


def test_lm_evals_own_models_still_load() -> None:
    """lm-eval imports its models only while its registry is empty: the hook must not fill it
    first (it did once, and ``lm_eval --model hf`` found no model)."""
    code = ("import lm_eval.api.registry as r; print(r.get_model('hf').__name__);"
            "print(r.get_model('cream-hf').__name__)")
    assert _python(code) == ["HFLM", "CreamHFLM"]


def test_placeholder_upgrades_to_the_class_when_asked_for() -> None:
    code = ("import lm_eval.api.registry as r; m = r.get_model('cream-hf');"
            "print(m.__module__, m.__name__, r.model_registry.get('cream-hf') is m)")
    assert _python(code) == ["cream_plugin.evaluators.cream_hflm CreamHFLM True"]


def test_hook_can_be_turned_off() -> None:
    assert _python(PROBE, CREAM_LM_EVAL_HOOK="0")[0] == "absent"


def test_register_models_keeps_an_existing_registration() -> None:
    registry = Registry("model")
    hook.register_models(registry)
    hook.register_models(registry)  # twice: no collision
    assert registry._objs["cream-hf"] == hook.MODELS["cream-hf"]

    taken = Registry("model")
    taken.register("cream-hf", target="somebody.else:Model")
    hook.register_models(taken)
    assert taken._objs["cream-hf"] == "somebody.else:Model"


def test_a_changed_registry_warns_and_leaves_lm_eval_working(capsys, monkeypatch) -> None:
    class Loader:
        def exec_module(self, module: object) -> None:
            module.executed = True  # type: ignore[attr-defined]

    def broken(registry: object) -> None:
        raise AttributeError("model_registry")  # what a future lm-eval might do

    monkeypatch.setattr(hook, "register_models", broken)
    module = SimpleNamespace()
    hook._RegisteringLoader(Loader()).exec_module(module)  # type: ignore[arg-type]
    assert module.executed
    assert "could not register lm-eval models" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["lm_eval.api.registry", "lm_eval.models.huggingface", "json"])
def test_watcher_ignores_every_other_module(name: str) -> None:
    assert hook.RegistryWatcher().find_spec(name, None) is None
