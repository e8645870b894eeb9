"""``cream model-path NAME``: the local folder of a model name, for TRL scripts and lm_eval.

TRL's scripts and ``lm_eval --model_args pretrained=...`` take a folder; the project's names
(the built-in ``smollm2-135m-instruct``, ``tiny-random``) only exist as folders after their
conversion. Only the path goes to stdout, so ``$(cream model-path)`` works in a shell.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

HELP = "Print the local folder of a model name (converting the built-in ones once)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cream_plugin.forward.models import DEFAULT_MODEL

    parser.add_argument(
        "name", metavar="NAME", nargs="?", default=DEFAULT_MODEL,
        help=f"built-in name ({DEFAULT_MODEL}, tiny-random), local folder, .gguf file or a Hub "
        f"id in the local HF cache (default {DEFAULT_MODEL})",
    )


def local_model_path(name: str) -> str:
    """The folder (or, for a ``.gguf`` name, the file) that ``name`` resolves to on this disk."""
    from pathlib import Path

    from cream_plugin.errors import ModelLoadError
    from cream_plugin.forward.models import resolve_model_path

    path, gguf = resolve_model_path(name)
    if gguf:
        return str(Path(path) / gguf)
    if Path(path).is_dir():
        return str(Path(path).resolve())
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return str(snapshot_download(path, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError) as exc:
        raise ModelLoadError(
            f"{name!r} is neither a built-in name, a local folder nor a Hub id in the local HF "
            f"cache ({type(exc).__name__}); download it once with `hf download {name}`"
        ) from None


def run(args: argparse.Namespace) -> int:
    # Conversion progress from transformers goes to stderr, never into $(...).
    with contextlib.redirect_stdout(sys.stderr):
        path = local_model_path(args.name)
    print(path)
    return 0
