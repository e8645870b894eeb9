"""Every stage of a run's graph with its identity, computed without running anything: name,
type, code version, config identity (version + hashed settings), the models it loads and its
inputs, where an upstream result's digest is stood in for by the upstream stage's name and a
model's by its key (so the record depends on the graph's shape and settings, not on weights).

``python tests/stage_identities.py OUT.json`` records the smoke preset's graph; the file in
tests/data was recorded from the code at 9b60404 (before the method knobs and
``consistency.after_last``), and tests/test_method_knobs.py checks that the current code
gives the existing methods' stages exactly those identities.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

FILE_DIGESTS = ("data", "tasks")
"""Inputs that digest files (data sets, task YAMLs): recorded by key only, so the record does
not depend on the data folder or on edits to the task files."""


class _Resolver:
    def result(self, spec: Any) -> Any:
        return SimpleNamespace(digest=f"@{spec.name}")

    def ensure_checkpoint(self, key: str) -> None:
        raise AssertionError(key)


def smoke_config(overrides: list[str] | None = None) -> Any:
    from cream_plugin.config import load_config
    from cream_plugin.config_checks import load_yaml

    text = (resources.files("cream_plugin") / "presets" / "smoke.yaml").read_text()
    return load_config(base=load_yaml(text), overrides=overrides or [])


def graph_identities(config: Any, run_dir: Path) -> list[dict[str, Any]]:
    """The identity record of every stage of ``config``'s whole-run graph, in run order."""
    from cream_plugin.loop.context import RunContext
    from cream_plugin.loop.distributed import DistContext
    from cream_plugin.loop.graph import StageGraph
    from cream_plugin.loop.runner import config_identity
    from cream_plugin.plugins.methods import resolve_methods

    class Ctx(RunContext):
        def model_digest(self, key: str) -> str:
            return f"model:{key}"

    ctx = Ctx(config, run_dir, DistContext())
    ctx.runner = _Resolver()
    graph = StageGraph(config, resolve_methods(config.methods), run_dir).whole_run()
    records = []
    for spec in graph:
        inputs = {k: ("<file digest>" if k in FILE_DIGESTS else v)
                  for k, v in spec.inputs(ctx).items()}
        records.append({"name": spec.name, "type": type(spec).__name__,
                        "version": spec.version, "settings": list(spec.settings),
                        "config_identity": config_identity(spec, ctx),
                        "models": list(spec.models()), "inputs": inputs})
    return records


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = graph_identities(smoke_config(), Path(tmp))
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{len(out)} stages -> {sys.argv[1]}")
