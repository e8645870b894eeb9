"""Scale-out: the shipped accelerate configs, ``cream run --accelerate-config`` (re-executes
itself under ``accelerate launch``), and the two things training needs beyond DDP.

A model whose training state does not fit one device trains under FSDP2 or DeepSpeed ZeRO-3,
chosen by the accelerate config the run is launched with. Sampling and scoring split rows
across processes (:mod:`cream_plugin.loop.distributed`); scoring can also shard the model itself
(``model.scoring_placement``, :mod:`cream_plugin.forward.placement`). What this module adds is for
training:

- :func:`check_engine`: the engine the launch config asked for is the one the Trainer got
  (accelerate silently falls back to DDP on CPU processes, see docs/scaling.md);
- :func:`gathered_state_dict`: saving collects the full weights from every rank (a collective
  every process calls) so the main process writes one safetensors checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from cream_plugin.errors import ConfigError

log = logging.getLogger("cream.launch")

CONFIG_PACKAGE = "cream_plugin"
CONFIG_FOLDER = "accelerate_configs"
LAUNCH_OPTIONS = ("--accelerate-config", "--num-processes", "--launch-arg")
"""``cream run`` options that belong to the launcher, left out of the re-executed command."""


def shipped_configs() -> list[str]:
    """Names of the accelerate configs shipped in the package (fsdp, multi_gpu, zero3)."""
    folder = resources.files(CONFIG_PACKAGE) / CONFIG_FOLDER
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def config_path(name: str) -> Path:
    """The file of a shipped config name, or ``name`` itself when it is a YAML file."""
    if name in shipped_configs():
        with resources.as_file(resources.files(CONFIG_PACKAGE) / CONFIG_FOLDER / f"{name}.yaml") \
                as path:
            return Path(path)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    raise ConfigError(
        f"--accelerate-config: {name!r} is neither a shipped config "
        f"({', '.join(shipped_configs())}) nor a file"
    )


def read_config(name: str) -> dict[str, Any]:
    """The accelerate config as a dict, checked for the settings cream relies on."""
    import yaml

    path = config_path(name)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or "distributed_type" not in data:
        raise ConfigError(f"{path}: not an accelerate config (no distributed_type)")
    fsdp = data.get("fsdp_config") or {}
    if data["distributed_type"] == "FSDP" and fsdp.get("fsdp_cpu_ram_efficient_loading"):
        raise ConfigError(f"{path}: fsdp_config.fsdp_cpu_ram_efficient_loading must be false "
                          "(cream's sampling and scoring stages need the whole model in every "
                          "process; with true, ranks other than 0 load meta tensors)")
    return data


def strip_options(argv: Sequence[str], names: Sequence[str] = LAUNCH_OPTIONS) -> list[str]:
    """``argv`` without the options ``names`` and their values (``--x v`` and ``--x=v``)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in names:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def launch_argv(config: str, cream_argv: Sequence[str], num_processes: int | None = None,
                launch_args: Sequence[str] = ()) -> list[str]:
    """The command that runs ``cream <cream_argv>`` under ``accelerate launch`` with ``config``.

    ``launch_args`` go to the launcher as given (e.g. ``--main_process_port=29501``,
    ``--mixed_precision=no``); they override the config file's values.
    """
    read_config(config)  # refuse a bad config before any process starts
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(config_path(config))]
    if num_processes is not None:
        if num_processes < 1:
            raise ConfigError(f"--num-processes: expected a positive count, got {num_processes}")
        argv += ["--num_processes", str(num_processes)]
    argv += [*launch_args, "-m", "cream_plugin.cli", *strip_options(cream_argv)]
    return argv


def under_launcher() -> bool:
    """True inside a process started by ``accelerate launch`` / ``torchrun``."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def relaunch(config: str, cream_argv: Sequence[str], num_processes: int | None = None,
             launch_args: Sequence[str] = ()) -> None:
    """Replace this process by ``accelerate launch`` of the same ``cream`` command."""
    if under_launcher():
        raise ConfigError("--accelerate-config: this process was already started by a launcher; "
                          "drop the option or run `cream` directly")
    argv = launch_argv(config, cream_argv, num_processes, launch_args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def check_launch_env(env: dict[str, str] | None = None) -> None:
    """Refuse launch settings that leave some process without the whole model (a config passed
    to ``accelerate launch`` directly, e.g. TRL's fsdp2.yaml)."""
    env = dict(os.environ) if env is None else env
    from cream_plugin.testing import ENV_FSDP_ON_CPU

    if env.get(ENV_FSDP_ON_CPU) == "1":
        from cream_plugin.testing import allow_fsdp_on_cpu

        allow_fsdp_on_cpu()
    if requested_engine(env) == "fsdp" and \
            env.get("FSDP_CPU_RAM_EFFICIENT_LOADING", "").lower() in ("true", "1"):
        raise ConfigError(
            "accelerate config: fsdp_cpu_ram_efficient_loading must be false for cream (its "
            "sampling and scoring stages need the whole model in every process; with true, "
            "ranks other than 0 load meta tensors); use `cream run --accelerate-config fsdp`"
        )


def requested_engine(env: dict[str, str] | None = None) -> str:
    """The training engine the launch config asked for: fsdp, deepspeed, ddp or single."""
    env = dict(os.environ) if env is None else env
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "deepspeed"
    return "ddp" if int(env.get("WORLD_SIZE", "1") or 1) > 1 else "single"


def engine_of(accelerator: Any) -> str:
    """The engine an Accelerator actually prepared the model with."""
    kind = str(getattr(accelerator, "distributed_type", "NO")).rsplit(".", 1)[-1]
    if kind == "FSDP":
        return "fsdp"
    if kind == "DEEPSPEED":
        return "deepspeed"
    return "ddp" if int(getattr(accelerator, "num_processes", 1)) > 1 else "single"


def check_engine(accelerator: Any, stage: str, env: dict[str, str] | None = None) -> str:
    """The engine of ``accelerator``; :class:`ConfigError` when it is not the requested one.

    accelerate 1.x applies FSDP and DeepSpeed only to accelerator devices (GPU, XPU, NPU, ...):
    CPU processes get DDP (MULTI_CPU) without a word, which would not shard anything.
    """
    wanted, got = requested_engine(env), engine_of(accelerator)
    if wanted in ("fsdp", "deepspeed") and got != wanted:
        raise ConfigError(
            f"{stage}: the accelerate config asks for {wanted} but accelerate prepared the model "
            f"with {got} ({getattr(accelerator, 'distributed_type', '?')}); accelerate applies "
            f"{wanted} to GPU/XPU/NPU processes only, not to CPU processes (docs/scaling.md)"
        )
    log.info("%s: training engine %s on %s process(es)", stage, got,
             getattr(accelerator, "num_processes", 1))
    return got


def gathered_state_dict(trainer: Any) -> dict[str, Any] | None:
    """The full weights of a sharded trainer's model on the main process (``{}`` on the
    others), or None when the model is whole in every process (single, DDP).

    Call it on every process: under FSDP and ZeRO-3 gathering is a collective.
    """
    accelerator = trainer.accelerator
    engine = engine_of(accelerator)
    if engine == "fsdp":
        state = dict(accelerator.get_state_dict(trainer.model))
    elif engine == "deepspeed":
        state = dict(accelerator.get_state_dict(getattr(trainer, "deepspeed", None)
                                                or trainer.model_wrapped))
    else:
        return None
    return retie(state, saveable_model(trainer))


def retie(state: dict[str, Any], model: Any) -> dict[str, Any]:
    """``state`` with tied parameters (e.g. embeddings and lm_head) sharing one tensor again.

    Gathering copies each name separately; transformers finds tied weights by shared storage
    and leaves the duplicates out of the checkpoint, so without this a gathered checkpoint
    would carry keys a single-process one does not.
    """
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    for group in names.values():
        present = [n for n in group if n in state]
        for alias in present[1:]:
            state[alias] = state[present[0]]
    return state


def saveable_model(trainer: Any) -> Any:
    """The trained model without DDP/DeepSpeed wrappers (under FSDP2 the module itself)."""
    return trainer.accelerator.unwrap_model(trainer.model)
