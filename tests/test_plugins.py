"""The plugin system: built-ins, third-party entry points, and each error case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cream_plugin import get_plugin_manager, get_rewarder, list_components
from cream_plugin.cli import main
from cream_plugin.plugins import hookspecs
from cream_plugin.plugins.registry import KINDS, UnknownComponentError, get_component
from tests.fake_dist import activate, deactivate, make_plugin_dist

GOOD = """
from cream_plugin import hookimpl

class ConstantRewarder:
    '''Gives every response the same reward.'''
    def __init__(self, value=1.0):
        self.value = value
    def score(self, prompts, responses):
        from cream_plugin import RewardResult
        return RewardResult([[self.value] * len(r) for r in responses])

@hookimpl
def register_rewarders(register):
    register("constant", ConstantRewarder)
"""

DUPLICATE = """
from cream_plugin import hookimpl

@hookimpl
def register_rewarders(register):
    register("constant", object, description="a second 'constant'")
    register("other-rewarder", object, description="still registered")
"""

RAISES_ON_IMPORT = """
raise ImportError("this plugin needs a package that is missing")
"""

WRONG_SIGNATURE = """
from cream_plugin import hookimpl

@hookimpl
def register_rewarders(register, bogus):
    register("never", object)
"""

UNKNOWN_HOOK = """
from cream_plugin import hookimpl

@hookimpl
def register_rewarder(register):  # typo: the hook is register_rewarders
    register("never", object)
"""


@pytest.fixture
def plugin_root(tmp_path, fresh_plugins):
    roots: list[tuple[Path, list[str]]] = []

    def add(dist: str, module: str, source: str, version: str = "0.3.1") -> Path:
        root = make_plugin_dist(tmp_path / dist, dist, version, module, source)
        activate(root)
        roots.append((root, [module]))
        return root

    yield add
    for root, modules in roots:
        deactivate(root, *modules)


def test_every_hookspec_is_a_register_hook_with_a_docstring():
    specs = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert sorted(specs) == sorted(KINDS.values())
    for name in specs:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert "register(" in doc, f"{name} must document its register() call"


def test_builtins_are_listed_with_builtin_origin(fresh_plugins):
    comps = list_components()
    assert comps, "no built-in components registered"
    assert all(c.origin == "built-in" for c in comps)


def test_third_party_plugin_listed_with_distribution(plugin_root, capsys):
    plugin_root("cream-constant", "cream_constant_plugin", GOOD)
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = [r for r in data["components"] if r["name"] == "constant"]
    assert rows == [
        {
            "kind": "rewarder",
            "name": "constant",
            "plugin": "cream_constant_plugin",
            "origin": "cream-constant 0.3.1",
            "description": "Gives every response the same reward.",
        }
    ]
    result = get_rewarder("constant", value=2.5).score(["p"], [["a", "b"]])
    assert result.rewards.tolist() == [[2.5, 2.5]]


def test_table_output_names_the_distribution(plugin_root, capsys):
    plugin_root("cream-constant", "cream_constant_plugin", GOOD)
    main(["plugins"])
    line = next(x for x in capsys.readouterr().out.splitlines() if " constant " in x)
    assert "rewarder" in line and "cream-constant 0.3.1" in line


def assert_one_line_error(capsys, match: str) -> str:
    """A plugin error is one stderr line naming the fix, never a UserWarning with file/line."""
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert match in line and line.startswith("cream: plugin ")
    assert "CREAM_PLUGINS=" in line and "UserWarning" not in line and ".py:" not in line
    return line


def test_duplicate_name_names_both_plugins_and_keeps_the_first(plugin_root, capsys):
    plugin_root("cream-constant", "cream_constant_plugin", GOOD)
    plugin_root("cream-dupe", "cream_dupe_plugin", DUPLICATE, version="1.0")
    comps = {c.name: c for c in list_components("rewarder")}
    assert_one_line_error(capsys, "already registered")
    assert comps["constant"].origin == "cream-constant 0.3.1"
    assert comps["other-rewarder"].origin == "cream-dupe 1.0"  # the rest of that plugin works
    (error,) = [e for e in get_plugin_manager().errors if "already registered" in e]
    assert "cream_dupe_plugin" in error and "cream-dupe 1.0" in error
    assert "cream-constant 0.3.1" in error


def test_plugin_that_raises_on_import_is_reported_and_others_work(plugin_root, capsys):
    plugin_root("cream-broken", "cream_broken_plugin", RAISES_ON_IMPORT, version="2.0")
    plugin_root("cream-constant", "cream_constant_plugin", GOOD)
    pm = get_plugin_manager()
    assert_one_line_error(capsys, "failed to import")
    (error,) = pm.errors
    assert "cream_broken_plugin" in error and "cream-broken 2.0" in error
    assert "missing" in error
    assert get_component("rewarder", "constant").origin == "cream-constant 0.3.1"


def test_wrong_hook_signature_is_reported_and_others_work(plugin_root, capsys):
    plugin_root("cream-badsig", "cream_badsig_plugin", WRONG_SIGNATURE, version="0.1")
    plugin_root("cream-constant", "cream_constant_plugin", GOOD)
    pm = get_plugin_manager()
    assert_one_line_error(capsys, "was not loaded")
    (error,) = pm.errors
    assert "cream_badsig_plugin" in error and "cream-badsig 0.1" in error and "bogus" in error
    names = {c.name for c in list_components("rewarder")}
    assert "constant" in names and "never" not in names


def test_unknown_hook_name_is_reported(plugin_root, capsys):
    plugin_root("cream-typo", "cream_typo_plugin", UNKNOWN_HOOK, version="0.2")
    pm = get_plugin_manager()
    assert_one_line_error(capsys, "unknown hook")
    (error,) = pm.errors
    assert "register_rewarder" in error and "cream-typo 0.2" in error


def test_cli_reports_plugin_errors_on_stderr(plugin_root, capsys):
    plugin_root("cream-broken", "cream_broken_plugin", RAISES_ON_IMPORT, version="2.0")
    rc = main(["plugins", "--json"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "cream-broken 2.0" in err
    assert json.loads(out)["components"], "built-ins must still be listed"


def test_env_var_restricts_external_plugins(plugin_root, monkeypatch):
    plugin_root("cream-constant", "cream_constant_plugin", GOOD)
    plugin_root("cream-broken", "cream_broken_plugin", RAISES_ON_IMPORT)
    monkeypatch.setenv("CREAM_PLUGINS", "cream_constant_plugin")
    pm = get_plugin_manager()
    assert pm.errors == []  # the broken one was never imported
    assert get_component("rewarder", "constant")
    monkeypatch.setenv("CREAM_PLUGINS", "")
    from cream_plugin.plugins.manager import reset_plugin_manager

    reset_plugin_manager()
    with pytest.raises(UnknownComponentError):
        get_component("rewarder", "constant")
    assert list_components(), "built-ins always load"


def test_unknown_name_lists_known_ones(fresh_plugins):
    with pytest.raises(UnknownComponentError) as info:
        get_rewarder("no-such-rewarder")
    message = str(info.value)
    assert "no-such-rewarder" in message and "known:" in message
    for comp in list_components("rewarder"):
        assert comp.name in message


def test_unknown_kind_is_an_error(fresh_plugins):
    with pytest.raises(ValueError, match="known kinds"):
        list_components("reward")


def test_console_script_lists_third_party_plugin(tmp_path):
    """The installed `cream` command finds a plugin distribution through its entry point."""
    root = make_plugin_dist(
        tmp_path / "d", "cream-constant", "0.3.1", "cream_constant_plugin", GOOD
    )
    env = dict(os.environ, PYTHONPATH=str(root))
    cream = Path(sys.executable).with_name("cream")
    out = subprocess.run(
        [str(cream), "plugins", "--json"], env=env, capture_output=True, text=True, check=True
    ).stdout
    rows = {r["name"]: r for r in json.loads(out)["components"]}
    assert rows["constant"]["origin"] == "cream-constant 0.3.1"
    assert {r["kind"] for r in rows.values()} >= {"rewarder"}


def test_every_hook_is_documented():
    """As in datasette: each hookspec has a section in docs/plugins.md."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    for name in KINDS.values():
        assert f"### {name}(register)" in docs, f"{name} is not documented in docs/plugins.md"
