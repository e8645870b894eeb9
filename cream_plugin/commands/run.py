"""``cream run``: the whole iterative loop, resumable, from a preset and/or a YAML config."""

from __future__ import annotations

import argparse
import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cream_plugin.commands import add_output_option

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
    add_output_option(parser, "run folder (default: the config's output_dir)")
    parser.add_argument(
        "--seeds",
        help="comma-separated seeds: one whole run per seed in OUTPUT/seed-<s>, and a report "
        "across seeds in OUTPUT (overrides the config's seeds)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="delete cream's own files from the run folder first instead of resuming it",
    )
    parser.add_argument(
        "--accelerate-config",
        metavar="NAME|FILE",
        help="run under `accelerate launch` with a shipped config (fsdp, zero3, multi_gpu; "
        "docs/scaling.md) or an accelerate config file",
    )
    parser.add_argument(
        "--num-processes", type=int, help="with --accelerate-config: processes (default: its own)"
    )
    parser.add_argument(
        "--launch-arg",
        dest="launch_args",
        action="append",
        default=[],
        metavar="ARG",
        help="with --accelerate-config: one more `accelerate launch` option, given as "
        "--launch-arg=--main_process_port=29501",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the stage graph and, for an existing run folder, which stages would be "
        "reused or recomputed and why; writes nothing, takes no lock",
    )
    parser.add_argument(
        "--adopt-dir",
        action="store_true",
        help="use an existing non-empty folder that is not a cream run folder (refused when "
        "anything in it sits at a name cream writes)",
    )
    parser.add_argument(
        "--break-lock",
        action="store_true",
        help="take over the run folder's cream.lock although it cannot be shown stale from "
        "here (another host's, e.g. a run preempted on another cluster node, or an empty one); "
        "only when that run is known to be gone (docs/reliability.md)",
    )


def build_config(args: argparse.Namespace) -> RunConfig:
    import yaml

    from cream_plugin.config import load_config

    base = {}
    if args.preset:
        text = (resources.files("cream_plugin") / "presets" / f"{args.preset}.yaml").read_text()
        base = yaml.safe_load(text)
    overrides = list(args.overrides)
    method, output, seeds = (_given(args, flag) for flag in ("method", "output", "seeds"))
    if method is not None:
        overrides.append("methods=[" + method + "]")
    if output is not None:
        overrides.append(f"output_dir={output}")
    if seeds is not None:
        overrides.append("seeds=[" + seeds + "]")
    return load_config(args.config, overrides, base=base)


def _given(args: argparse.Namespace, name: str) -> str | None:
    """The flag's value, None when it was not given; an empty value (``--output ""``, often an
    unset shell variable) is an error, never a silent fall-back to the config's value."""
    from cream_plugin.errors import ConfigError

    value = getattr(args, name)
    if value is None:
        return None
    if not value.strip() or not value.strip(" ,"):
        raise ConfigError(f"--{name}: empty value {value!r}; give a value or leave the flag out")
    return str(value)


def run(args: argparse.Namespace) -> int:
    import sys

    from cream_plugin.loop.pipeline import Pipeline
    from cream_plugin.trainers.launch import check_launch_env, relaunch

    config = build_config(args)  # validated before any work starts
    if args.dry_run:
        return dry_run(config)
    if args.accelerate_config:
        relaunch(args.accelerate_config, sys.argv[1:], args.num_processes, args.launch_args)
    check_launch_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if config.seeds:
        return run_seeds(config, args)
    pipeline = Pipeline(config)  # validates everything before the run folder is touched
    run_dir = pipeline.run(fresh=args.fresh, adopt=args.adopt_dir, break_lock=args.break_lock)
    if pipeline.dist.is_main:
        print(f"run finished: {run_dir}; report: {run_dir / 'report.md'}")
    return 0


def dry_run(config: RunConfig) -> int:
    """Print what ``cream run`` would do with this config, seed by seed; nothing is written."""
    import dataclasses

    from cream_plugin.loop.graph import format_plan
    from cream_plugin.loop.pipeline import Pipeline
    from cream_plugin.report.seeds import seed_dir

    if config.seeds:
        top = Path(config.output_dir).expanduser()
        configs = [dataclasses.replace(config, seed=s, seeds=[], output_dir=str(seed_dir(top, s)))
                   for s in config.seeds]
    else:
        configs = [config]
    for one in configs:
        pipeline = Pipeline(one)
        print(format_plan(pipeline.run_dir, pipeline.plan()), end="")
    return 0


def run_seeds(config: RunConfig, args: argparse.Namespace) -> int:
    """One whole run per seed under the top folder (which this process locks), then the
    report across seeds."""
    import dataclasses

    from cream_plugin.loop.pipeline import Pipeline
    from cream_plugin.loop.run_folder import RunFolder, check_output_dir
    from cream_plugin.report.seeds import seed_dir, write_seeds_report

    top = check_output_dir(config.output_dir)
    pipelines = [
        Pipeline(dataclasses.replace(config, seed=s, seeds=[],
                                     output_dir=str(seed_dir(top, s))))
        for s in config.seeds
    ]  # every seed's config is validated before any run starts
    folder = RunFolder(top)
    main = pipelines[0].dist.is_main
    if main:
        folder.claim(adopt=args.adopt_dir, methods=pipelines[0].methods)
        folder.acquire(break_lock=args.break_lock)
    try:
        for pipeline in pipelines:
            pipeline.run(fresh=args.fresh, adopt=args.adopt_dir, break_lock=args.break_lock)
        if main:
            path = write_seeds_report(top, config.seeds)
            print(f"{len(pipelines)} seeds finished: {top}; report: {path}")
    finally:
        if main:
            folder.release()
    return 0
