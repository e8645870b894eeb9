"""``cream plugins``: every registered component with its kind, name and origin."""

from __future__ import annotations

import argparse
import json

HELP = ("List registered components (rewarders, metrics, trainers, evaluators, samplers, "
        "methods and their method_options).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--kind", help="only this kind (rewarder, consistency_metric, ...)")


def run(args: argparse.Namespace) -> int:
    from cream_plugin.plugins.manager import get_plugin_manager
    from cream_plugin.plugins.registry import list_components

    rows = [c.as_dict() for c in list_components(args.kind)]
    errors = get_plugin_manager().errors
    if args.json:
        print(json.dumps({"components": rows, "errors": errors}, indent=2))
    else:
        widths = [max([len(r[k]) for r in rows] + [len(k)]) for k in ("kind", "name", "origin")]
        header = ("KIND", "NAME", "ORIGIN")
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  DESCRIPTION")
        for r in rows:
            cells = (r["kind"], r["name"], r["origin"])
            options = f" (options: {r['options']})" if r.get("options") else ""
            print(
                "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
                + "  "
                + r["description"]
                + options
            )
    # each error was printed on stderr, one line with its fix, when the manager was built
    return 1 if errors else 0
