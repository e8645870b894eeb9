"""The public surface for writing a method: everything a method's own iteration may import.

A method that builds its own iteration (``Method(..., build_iteration=fn)``) adds stages to
the run's :class:`StageGraph` with its helpers (``sample``, ``logps``, ``correctness``,
``evidence``, ``train``, ``evaluate``, ``add``) and with stages of its own: subclasses of
:class:`StageSpec` that read upstream results through :class:`RunContext` and return an
:class:`Output`. Its pairs are rows of the pairs stage's format (:func:`build_pairs` writes
them), which ``graph.train`` trains on. Only the names below are promised to stay; the built-in
``spin`` method (:mod:`cream_plugin.plugins.builtins.spin`) imports nothing else, and
docs/plugins.md walks through it.
"""

from __future__ import annotations

from cream_plugin.config import RunConfig
from cream_plugin.errors import ConfigError, DataError
from cream_plugin.forward.logprobs import SequenceLogProbs
from cream_plugin.loop.artifacts import Artifact
from cream_plugin.loop.context import RunContext
from cream_plugin.loop.graph import StageGraph
from cream_plugin.loop.identity import data_digest
from cream_plugin.loop.stage import Output, Parallel, StageSpec
from cream_plugin.loop.stages.logps import logps_table
from cream_plugin.loop.stages.sft import sft_examples
from cream_plugin.plugins.hookspecs import hookimpl
from cream_plugin.plugins.interfaces import (
    CONSISTENCY_COLUMN,
    PAIR_TEXT_COLUMNS,
    REF_COLUMNS,
    Message,
    Prompt,
)
from cream_plugin.plugins.methods import IterationBuilder, Method, method_settings
from cream_plugin.ranking.pairs import build_pairs

__all__ = [
    "CONSISTENCY_COLUMN",
    "PAIR_TEXT_COLUMNS",
    "REF_COLUMNS",
    "Artifact",
    "ConfigError",
    "DataError",
    "IterationBuilder",
    "Message",
    "Method",
    "Output",
    "Parallel",
    "Prompt",
    "RunConfig",
    "RunContext",
    "SequenceLogProbs",
    "StageGraph",
    "StageSpec",
    "build_pairs",
    "data_digest",
    "hookimpl",
    "logps_table",
    "method_settings",
    "sft_examples",
]
