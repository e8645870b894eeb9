"""Put claims.py's tables into a hand-written document, so its prose and its numbers cannot drift.

A document marks where a table goes with a pair of comments:

    <!-- claims: Ranking consistency (the paper's Table 2 shape) -->
    ...replaced on every run...
    <!-- /claims -->

The key names a block of claims.py's output by its headings: a `## ` section, a `### `
subsection inside it (`Section / Subsection`), or a bold label line such as `**Average**` inside
that (`Section / Subsection / Average`). The block is everything under that heading up to the
next heading of the same or a higher level, without the heading itself. Text outside the markers
is never touched; an unknown key or an unclosed marker is an error that names the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

OPEN = re.compile(r"^<!-- claims: (?P<key>.+?) -->\s*$")
CLOSE = "<!-- /claims -->"
BOLD = re.compile(r"^\*\*(?P<label>[^*]+)\*\*\s*$")


def blocks(generated: str) -> dict[str, str]:
    """Every addressable block of a claims.py output, by its key."""
    found: dict[str, list[str]] = {}
    h2 = h3 = bold = ""
    for line in generated.splitlines():
        if line.startswith("## "):
            h2, h3, bold = line[3:].strip(), "", ""
            found.setdefault(h2, [])
            continue
        if line.startswith("### ") and h2:
            found[h2].append(line)  # a subheading belongs to its section's block
            h3, bold = line[4:].strip(), ""
            found.setdefault(f"{h2} / {h3}", [])
            continue
        label = BOLD.match(line)
        if label and h2:
            for key in _keys(h2, h3, ""):
                found[key].append(line)
            bold = label["label"].strip()
            found.setdefault(_keys(h2, h3, bold)[-1], [])
            continue
        for key in _keys(h2, h3, bold):
            found[key].append(line)
    return {key: "\n".join(lines).strip("\n") for key, lines in found.items()}


def _keys(h2: str, h3: str, bold: str) -> list[str]:
    if not h2:
        return []
    keys = [h2]
    if h3:
        keys.append(f"{h2} / {h3}")
    if bold:
        keys.append(" / ".join(x for x in (h2, h3, bold) if x))
    return keys


def embed(document: str, generated: str, *, name: str = "the document") -> str:
    """`document` with every marked block replaced by the same-keyed block of `generated`."""
    available = blocks(generated)
    out: list[str] = []
    lines = document.splitlines()
    i = 0
    while i < len(lines):
        opened = OPEN.match(lines[i])
        out.append(lines[i])
        i += 1
        if not opened:
            continue
        key = opened["key"].strip()
        if key not in available:
            raise KeyError(f"{name}, line {i}: no table block {key!r} in claims.py's output; "
                           f"the keys are: {'; '.join(sorted(available))}")
        start = i
        while i < len(lines) and lines[i].strip() != CLOSE:
            if OPEN.match(lines[i]):
                break
            i += 1
        if i == len(lines) or lines[i].strip() != CLOSE:
            raise ValueError(f"{name}, line {start}: the block {key!r} is not closed by "
                             f"{CLOSE!r} before the next marker or the end of the file")
        out.extend(["", available[key], "", CLOSE])
        i += 1
    return "\n".join(out) + ("\n" if document.endswith("\n") else "")


def embed_file(path: Path, generated: str) -> bool:
    """Rewrite `path` in place; True when anything changed."""
    before = path.read_text()
    after = embed(before, generated, name=str(path))
    if after != before:
        path.write_text(after)
    return after != before
