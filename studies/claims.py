"""Every table of docs/study.md, regenerated from a study folder (or its packed copy).

Run:  python studies/claims.py RUN_DIR [--out FILE.md] [--pack DEST] [--into DOC.md]

RUN_DIR is a `cream run --preset study` folder (seed-* folders, one whole run per seed) or the
copy `--pack` makes of it (docs/study/raw2/: no checkpoints, large jsonl gzip-compressed); both
give the same tables. Seeds are the replicates: comparisons are paired within a seed (same
prompt or same benchmark item; exact McNemar for 0/1 items) and the per-seed differences are
summarised by their mean with a t-interval over seeds (n = seeds, MDE at 80% power). AUCs pool
the cases of all seeds (labelled so) beside the per-seed AUCs. Every p-value joins one family,
Holm-adjusted at the end, and the verdicts read the adjusted p. The statistics are the
library's (cream_plugin.instruments); intervals are 95%. `--into docs/study.md` refreshes the
tables a hand-written document embeds between `<!-- claims: KEY -->` markers (studies/embed.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python studies/claims.py`: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cream_plugin.instruments.seeds import proportion_across_seeds
from studies import anticorrelation, stage_times
from studies.cells import Family, level
from studies.embed import embed_file
from studies.folder import methods_in, read_jsonl, seed_label, seed_runs
from studies.table_benchmarks import benchmark_tables
from studies.table_consistency import consistency_measures, ranking_consistency
from studies.table_controls import controls_table, movement_and_length, open_controls
from studies.verdicts import gather, register, verdict_table


def scir_agreement(runs: list[Path]) -> list[str]:
    out = ["", "## SCIR: agreement of the two internal rewards (share of pairs)", "",
           "| iteration | agreement across seeds (logit-scale t-interval) |", "|---|---|"]
    measured = 0
    for t in (1, 2, 3):
        rows = [read_jsonl(r / "scir" / f"iter{t}" / "internal-consistency.jsonl") for r in runs]
        counts = [(round(x[0]["rate"] * x[0]["n"]), int(x[0]["n"])) for x in rows if x]
        if not counts:
            continue
        measured += 1
        e = proportion_across_seeds(counts)
        out.append(f"| {t} (M{t}) | {level(e, 'pct')}; {e.reason} |")
    if not measured:
        out.append("| n/a | no scir internal-consistency rows in this folder |")
    return out


def header(runs: list[Path], methods: list[str]) -> list[str]:
    return [f"Seeds: {', '.join(seed_label(r) for r in runs)} (n = {len(runs)}). Methods: "
            f"{', '.join(methods)}. Seeds are the replicates: paired differences are taken "
            "within each seed, then averaged over seeds (t-interval, n = seeds); MDE is the "
            "smallest difference detectable at 80% power (two-sided 5%).", ""]


def claims(top: Path) -> str:
    runs = seed_runs(top)
    methods = methods_in(runs)
    family = Family()
    found = gather(runs)
    register(found, family)
    body = benchmark_tables(runs, methods)
    body += ranking_consistency(runs, methods)
    body += consistency_measures(runs, family)
    body += controls_table(runs, methods, family)
    body += open_controls(runs, methods, family)
    body += movement_and_length(runs, methods)
    body += scir_agreement(runs)
    body += ["", "## Appendix: why the implicit reward's consistency comes out as it does", "",
             anticorrelation.render([top]).rstrip()]
    body += ["", "## Appendix: wall time per stage", "",
             stage_times.render(top).replace(str(top), "the study folder").rstrip()]
    body += family.table()
    out = header(runs, methods) + verdict_table(found, family) + [""] + body
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("top", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--pack", type=Path, metavar="DEST",
                        help="also copy the raw material (no checkpoints) into DEST")
    parser.add_argument("--into", type=Path, action="append", default=[], metavar="DOC",
                        help="refresh the tables DOC embeds between <!-- claims: KEY --> markers")
    args = parser.parse_args()
    if args.pack:
        from studies.pack import pack

        files, size = pack(args.top, args.pack)
        print(f"packed {files} files ({size / 1e6:.1f} MB) into {args.pack}")
    text = claims(args.top)
    if args.out:
        args.out.write_text(text)
    for doc in args.into:
        changed = embed_file(doc, text)
        print(f"{doc}: {'tables refreshed' if changed else 'tables already current'}",
              file=sys.stderr)
    if not args.out and not args.into:
        print(text)


if __name__ == "__main__":
    main()
