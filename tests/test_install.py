"""The documented install: CPU torch only, and the package's own entry points."""

from __future__ import annotations

import importlib.metadata as md


def test_environment_holds_no_cuda_packages():
    names = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"])
    cuda = [n for n in names if n.lower().startswith(("nvidia-", "nvidia_"))]
    assert cuda == [], f"the documented install pulled CUDA packages: {cuda}"


def test_trl_is_the_tested_minor_version():
    requirement = next(r for r in md.requires("cream-plugin") or [] if r.startswith("trl"))
    assert "<1.17" in requirement
    assert md.version("trl").startswith("1.16.")


def test_console_script_is_declared():
    scripts = {ep.name: ep.value for ep in md.entry_points(group="console_scripts")}
    assert scripts["cream"] == "cream_plugin.cli:main"
