"""The installed distribution: built-in plugins live under the project's namespace
(``cream_plugin.rewarders``, ``cream_plugin.evaluators``), no generic top-level package is
installed, and every source package and task file of the repository is in the wheel."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True,
        timeout=600,
    )
    (found,) = out.glob("cream_plugin-*.whl")
    return found


def test_wheel_has_the_namespaced_plugins_and_no_top_level_ones(wheel) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    # beside the package, only the lm-eval start-up hook (tests/test_lm_eval_hook.py)
    assert tops == {"cream_plugin", "_cream_lm_eval_hook.py", "cream_plugin_lm_eval.pth"}
    for folder, prefix in (("rewarders", "cream_plugin/rewarders"),
                           ("evaluators", "cream_plugin/evaluators"),
                           ("cream_plugin", "cream_plugin")):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                rel = f"{prefix}/{path.relative_to(REPO / folder).as_posix()}"
                if folder == "cream_plugin" and rel.split("/")[1] in ("rewarders", "evaluators"):
                    continue  # a worktree's symlinks, not sources
                assert rel in names, f"{rel} is missing from the wheel"


def test_installed_package_imports_under_the_namespace_only(wheel, tmp_path) -> None:
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import cream_plugin.rewarders.judge, cream_plugin.evaluators.lm_eval_evaluator;"
        "assert cream_plugin.rewarders.judge.__file__.startswith(sys.argv[1]);"
        "import importlib.util as u;"
        "print(u.find_spec('rewarders'), u.find_spec('evaluators'))"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code, str(target)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None"]
    failed = subprocess.run([sys.executable, "-I", "-c", "import rewarders"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and "No module named 'rewarders'" in failed.stderr


def test_wheel_pth_registers_cream_hf_when_lm_eval_loads(wheel, tmp_path) -> None:
    """The wheel's .pth, processed as site-packages would, and nothing of the dev install's."""
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    purelib = sysconfig.get_paths()["purelib"]  # lm-eval, appended without running its .pth files
    code = (
        "import site, sys; sys.path.append(sys.argv[2]); site.addsitedir(sys.argv[1]);"
        "import _cream_lm_eval_hook as h; assert h.__file__.startswith(sys.argv[1]), h.__file__;"
        "import lm_eval.models; from lm_eval.api.registry import model_registry as r;"
        "print(r._objs['cream-hf'])"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code, str(target), purelib],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cream_plugin.evaluators.cream_hflm:CreamHFLM"
