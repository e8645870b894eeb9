"""Model and data set cards with lineage: what produced a checkpoint or an artifact.

A card is a ``README.md``: YAML metadata the Hugging Face Hub reads (``base_model``, ``datasets``,
``tags``, ``library_name``, ``configs``), then a body a person reads. A model card records the
checkpoint's lineage (method, iteration, parent checkpoint and its digest, the pairs artifact's
digest and size, the ranking-consistency summary, training settings, the iteration's benchmark
and instrument results), also as a machine-readable ``cream`` key, so the chain of checkpoints
can be followed once a checkpoint has left its run folder. A data set card lists JSON-lines
artifacts as ``configs`` so ``datasets.load_dataset(folder, name)`` and the Hub viewer load them.

:func:`lineage_from_run` reads a checkpoint's lineage from a run folder's manifests (linked by
digest, not by stage names); :func:`write_run_cards` (re)writes every card of a run folder.
"""

from __future__ import annotations

from cream_plugin.cards.dataset import (
    DatasetEntry,
    dataset_card_text,
    dataset_entry,
    write_dataset_card,
)
from cream_plugin.cards.lineage import (
    available_checkpoints,
    dataset_folders,
    file_digest,
    folder_digest,
    lineage_from_run,
    read_manifests,
    run_card_text,
    source_hub_ids,
    standalone_lineage,
    write_run_cards,
)
from cream_plugin.cards.model import (
    BUILTIN_HUB_IDS,
    CARD_NAME,
    DATASET_STEPS,
    KNOWN_LICENSES,
    METHOD_TEXT,
    PAIRS_COLUMNS,
    SAMPLES_COLUMNS,
    TAGS,
    ArtifactRef,
    Lineage,
    hub_model_id,
    human_size,
    model_card_text,
    read_card_metadata,
    write_model_card,
)

__all__ = [
    "BUILTIN_HUB_IDS",
    "CARD_NAME",
    "DATASET_STEPS",
    "KNOWN_LICENSES",
    "METHOD_TEXT",
    "PAIRS_COLUMNS",
    "SAMPLES_COLUMNS",
    "TAGS",
    "ArtifactRef",
    "DatasetEntry",
    "Lineage",
    "available_checkpoints",
    "dataset_card_text",
    "dataset_entry",
    "dataset_folders",
    "file_digest",
    "folder_digest",
    "hub_model_id",
    "human_size",
    "lineage_from_run",
    "model_card_text",
    "read_card_metadata",
    "read_manifests",
    "run_card_text",
    "source_hub_ids",
    "standalone_lineage",
    "write_dataset_card",
    "write_model_card",
    "write_run_cards",
]
