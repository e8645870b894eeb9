"""``cream config``: the resolved run config as YAML, or (``--explain``) every setting with its
type, default, bounds and meaning."""

from __future__ import annotations

import argparse

HELP = "Print the resolved run config (preset + file + --set), or --explain every setting."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cream_plugin.commands.run import preset_names

    parser.add_argument("--preset", choices=preset_names(), help="start from a shipped preset")
    parser.add_argument("--config", help="YAML run config (applied after the preset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override one setting")
    parser.add_argument("--explain", action="store_true",
                        help="list every setting: key, type, default, bounds, meaning")


def run(args: argparse.Namespace) -> int:
    import yaml

    from cream_plugin.config import explain

    if args.explain:
        for key, tp, default, doc in explain():
            print(f"{key} ({tp}, default {default!r}): {doc}")
        return 0
    from cream_plugin.commands.run import build_config

    args.method = args.output = args.seeds = None
    print(yaml.safe_dump(build_config(args).to_dict(), sort_keys=False), end="")
    return 0
