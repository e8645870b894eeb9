"""``cream run``: the whole iterative loop, resumable, from a preset and/or a YAML config."""

from __future__ import annotations

import argparse
import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cream_plugin.config import RunConfig

HELP = "Run SFT -> sample -> self-reward -> consistency -> CREAM-DPO -> evaluate, resumably."


def preset_names() -> list[str]:
    folder = resources.files("cream_plugin") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", choices=preset_names(), help="start from a shipped preset (smoke, demo, paper)"
    )
    parser.add_argument("--config", type=Path, help="YAML run config (applied after the preset)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. training.beta=0.2",
    )
    parser.add_argument(
        "--method",
        help="comma-separated methods (sft, srlm, oracle, "
        "cream-no-rc, cream); overrides the config's methods",
    )
    parser.add_argument("--output", help="run folder (default: the config's output_dir)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="delete cream's own files from the run folder first instead of resuming it",
    )
    parser.add_argument(
        "--adopt-dir",
        action="store_true",
        help="use an existing non-empty folder that is not a cream run folder",
    )


def build_config(args: argparse.Namespace) -> RunConfig:
    import yaml

    from cream_plugin.config import load_config

    base = {}
    if args.preset:
        text = (resources.files("cream_plugin") / "presets" / f"{args.preset}.yaml").read_text()
        base = yaml.safe_load(text)
    overrides = list(args.overrides)
    if args.method:
        overrides.append("methods=[" + args.method + "]")
    if args.output:
        overrides.append(f"output_dir={args.output}")
    return load_config(args.config, overrides, base=base)


def run(args: argparse.Namespace) -> int:
    from cream_plugin.pipeline import Pipeline

    config = build_config(args)  # validated before any work starts
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    pipeline = Pipeline(config)  # validates everything before the run folder is touched
    run_dir = pipeline.run(fresh=args.fresh, adopt=args.adopt_dir)
    if pipeline.dist.is_main:
        print(f"run finished: {run_dir}; report: {run_dir / 'report.md'}")
    return 0
