"""Ships ``cream_plugin_lm_eval.pth`` in wheels and editable installs (see _cream_lm_eval_hook).

Everything else about the build is in pyproject.toml. setuptools has no setting for a ``.pth``
file at the top of site-packages, so two commands are extended: ``build_py`` for wheels and
``editable_wheel`` for ``pip install -e``.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "cream_plugin_lm_eval.pth"
PTH_LINE = "import _cream_lm_eval_hook; _cream_lm_eval_hook.install()\n"


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        Path(self.build_lib, PTH_NAME).write_text(PTH_LINE)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib, PTH_NAME))]


class EditableWheelWithPth(editable_wheel):
    # setuptools' editable build zips the folder ``unpacked_wheel`` after this step.
    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        Path(unpacked_wheel, PTH_NAME).write_text(PTH_LINE)
        return result


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
