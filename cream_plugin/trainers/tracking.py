"""Experiment tracking for every trainer a run starts (``training.report_to``, ``run_name``).

A run is several trainings (SFT, then one preference training per method and iteration). Each
becomes one tracker run, named after its stage (``M1``, ``cream/M3``) and grouped under the
run's name, so a dashboard shows the run's stages side by side:

- TensorBoard: event files in ``<run_dir>/tb/<stage>`` (``tensorboard --logdir <run_dir>/tb``);
- Trackio: project = run name, run = stage, always the local store (``$TRACKIO_DIR``, default
  ``$HF_HOME/trackio``): no Space is created or synced from here;
- Weights & Biases: group = run name, run = stage (``WANDB_PROJECT`` picks the project);
- any other ``transformers`` integration (mlflow, comet_ml, ...): run name = stage.

The default ``"none"`` keeps training quiet. Usage around one trainer::

    kwargs.update(tracking_kwargs(report_to, run_name, stage="cream/M3"))
    trainer = CREAMTrainer(..., args=CREAMConfig(**kwargs))
    with track(trainer, stage="cream/M3", run_dir=run_dir, run_name=run_name):
        trainer.train()
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cream_plugin.errors import ConfigError

TB_FOLDER = "tb"
"""Run-folder sub-folder holding one TensorBoard log folder per stage."""

# The PyPI package that provides each integration, where it differs from the name.
_PACKAGES = {"azure_ml": "azureml-core", "comet_ml": "comet-ml", "neptune": "neptune"}
TRACKING_EXTRA = ("tensorboard", "trackio")
"""The trackers the `[tracking]` extra installs (the ones docs/integration.md uses)."""


def normalize_report_to(
    value: str | Sequence[str] | None, key: str = "training.report_to"
) -> list[str]:
    """The trackers to report to, checked: ``"none"``/``None``/``[]`` -> ``[]``.

    Accepts a list or a comma-separated string (``--set training.report_to=tensorboard,trackio``)
    and ``"all"`` (every installed integration, as in ``transformers``). An unknown or
    uninstalled tracker raises :class:`ConfigError` naming ``key`` before any training starts.
    """
    if value is None:
        return []
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value if v.strip()]
    else:
        raise ConfigError(f"{key}: expected a tracker name or a list of them, got {value!r}")
    if names in ([], ["none"]):
        return []
    if "none" in names:
        raise ConfigError(f"{key}: 'none' cannot be combined with trackers ({', '.join(names)})")
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    if names == ["all"]:
        return list(get_available_reporting_integrations())
    available = set(get_available_reporting_integrations())
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            known = ", ".join(sorted(INTEGRATION_TO_CALLBACK))
            raise ConfigError(f"{key}: unknown tracker {name!r}; known: none, all, {known}")
        if name not in available:
            package = _PACKAGES.get(name, name)
            extra = " or pip install 'cream-plugin[tracking]'" if name in TRACKING_EXTRA else ""
            raise ConfigError(
                f"{key}: tracker {name!r} is not installed (pip install {package}{extra})")
    return list(dict.fromkeys(names))


def default_run_name(run_dir: str | os.PathLike[str]) -> str:
    """The run's name when ``training.run_name`` is unset: the run folder's name."""
    return Path(run_dir).resolve().name or "cream"


def tracking_kwargs(
    report_to: str | Sequence[str] | None,
    run_name: str | None,
    *,
    stage: str,
    run_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for the ``TrainingArguments`` (any TRL config) of one stage's trainer.

    ``report_to``: the checked tracker list (``"none"`` when empty). ``run_name``: the stage,
    so every tracker names the run after it. ``project``: the run's name (Trackio's project,
    which groups the stages). ``trackio_space_id=None`` and ``trackio_static_space_id=False``
    keep Trackio on the local store: no Space is created, synced or frozen at the end of
    training. ``run_name=None`` takes the run folder's name (``run_dir``), else ``"cream"``.
    """
    trackers = normalize_report_to(report_to)
    group = run_name or (default_run_name(run_dir) if run_dir is not None else "cream")
    kwargs: dict[str, Any] = {"report_to": trackers or "none", "run_name": stage}
    if trackers:
        kwargs.update(project=group, trackio_space_id=None, trackio_static_space_id=False)
    return kwargs


def tensorboard_dir(run_dir: str | os.PathLike[str], stage: str) -> Path:
    """``<run_dir>/tb/<stage>``: one TensorBoard log folder per stage, under the run folder."""
    return Path(run_dir) / TB_FOLDER / stage


@contextlib.contextmanager
def track(
    trainer: Any,
    *,
    stage: str,
    run_dir: str | os.PathLike[str],
    run_name: str | None = None,
) -> Iterator[None]:
    """Wrap ``trainer.train()``: point the trackers in ``trainer.args.report_to`` at this stage.

    TensorBoard's callback logs to :func:`tensorboard_dir` (``transformers`` 5 has no
    ``logging_dir`` argument; its default is a dated folder inside the scratch output folder,
    which the pipeline deletes). Weights & Biases reads ``WANDB_RUN_GROUP`` (the run's name) when
    training starts; the variable is restored afterwards. With no tracker this does nothing.
    """
    trackers = list(getattr(trainer.args, "report_to", None) or [])
    if not trackers:
        yield
        return
    group = run_name or default_run_name(run_dir)
    handler = getattr(trainer, "callback_handler", None)
    for callback in getattr(handler, "callbacks", []):
        if type(callback).__name__ == "TensorBoardCallback" and callback.tb_writer is None:
            callback.logging_dir = str(tensorboard_dir(run_dir, stage))
    saved = {name: os.environ.get(name) for name in ("WANDB_RUN_GROUP",)}
    if "wandb" in trackers:
        os.environ["WANDB_RUN_GROUP"] = group
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
