"""Scale-out plumbing (fast): the shipped accelerate configs, ``cream run --accelerate-config``,
the engine check, gathering a sharded model's weights for saving, and bf16 / device placement
on CPU. The 2-process FSDP runs are in tests/test_scaling_fsdp.py (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cream_plugin.errors import ConfigError
from cream_plugin.trainers.launch import (
    check_engine,
    check_launch_env,
    config_path,
    engine_of,
    gathered_state_dict,
    launch_argv,
    read_config,
    requested_engine,
    retie,
    shipped_configs,
    strip_options,
)


def test_shipped_configs_are_package_files_that_accelerate_parses() -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    assert shipped_configs() == ["fsdp", "multi_gpu", "zero3"]
    kinds = {}
    for name in shipped_configs():
        path = config_path(name)
        assert path.parent.name == "accelerate_configs" and path.is_file()
        parsed = ClusterConfig.from_yaml_file(str(path))  # accelerate's own loader
        kinds[name] = str(parsed.distributed_type).rsplit(".", 1)[-1]
        assert read_config(name)["mixed_precision"] == "bf16"
    assert kinds == {"fsdp": "FSDP", "multi_gpu": "MULTI_GPU", "zero3": "DEEPSPEED"}
    fsdp = read_config("fsdp")["fsdp_config"]
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp["fsdp_cpu_ram_efficient_loading"] is False
    zero3 = read_config("zero3")["deepspeed_config"]
    assert zero3["zero_stage"] == 3 and zero3["zero3_save_16bit_model"] is True
    assert zero3["zero3_init_flag"] is False


def test_config_files_are_checked(tmp_path) -> None:
    with pytest.raises(ConfigError, match="neither a shipped config"):
        config_path("fsdp9")
    bad = tmp_path / "trl_fsdp2.yaml"
    bad.write_text("distributed_type: FSDP\nfsdp_config: {fsdp_cpu_ram_efficient_loading: true}\n")
    with pytest.raises(ConfigError, match="cpu_ram_efficient_loading must be false"):
        read_config(str(bad))
    (tmp_path / "other.yaml").write_text("a: 1\n")
    with pytest.raises(ConfigError, match="not an accelerate config"):
        read_config(str(tmp_path / "other.yaml"))
    ok = tmp_path / "mine.yaml"
    ok.write_text("distributed_type: MULTI_GPU\n")
    assert config_path(str(ok)) == ok


def test_strip_options_and_launch_argv() -> None:
    argv = ["run", "--preset", "smoke", "--accelerate-config", "fsdp", "--num-processes=2",
            "--launch-arg=--main_process_port=29511", "--launch-arg", "--mixed_precision=no",
            "--output", "out"]
    assert strip_options(argv) == ["run", "--preset", "smoke", "--output", "out"]
    cmd = launch_argv("fsdp", argv, 2, ["--mixed_precision=no"])
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[3:5] == ["--config_file", str(config_path("fsdp"))]
    assert cmd[5:] == ["--num_processes", "2", "--mixed_precision=no", "-m", "cream_plugin.cli",
                       "run", "--preset", "smoke", "--output", "out"]
    with pytest.raises(ConfigError, match="num-processes"):
        launch_argv("fsdp", argv, 0)


def test_cream_run_reexecutes_itself_under_accelerate_launch(monkeypatch, tmp_path) -> None:
    """The CLI path: the config is validated, then the process becomes accelerate launch."""
    from cream_plugin import cli

    seen: list[list[str]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        seen.append(argv)
        raise SystemExit(0)

    for name in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("os.execv", fake_execv)
    args = ["run", "--preset", "smoke", "--output", str(tmp_path / "r"),
            "--accelerate-config", "zero3", "--num-processes", "8"]
    monkeypatch.setattr(sys, "argv", ["cream", *args])
    with pytest.raises(SystemExit):
        cli.main(args)
    (cmd,) = seen
    assert cmd[cmd.index("--config_file") + 1] == str(config_path("zero3"))
    assert cmd[-5:] == ["run", "--preset", "smoke", "--output", str(tmp_path / "r")]
    assert not (tmp_path / "r").exists()  # nothing ran in the launching process
    # Inside a launched process the option is refused instead of launching again.
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert cli.main(args) == 1
    assert len(seen) == 1


def _accelerator(kind: str, processes: int = 2) -> Any:
    from accelerate.utils import DistributedType

    return SimpleNamespace(distributed_type=DistributedType[kind], num_processes=processes)


def test_the_requested_engine_must_be_the_one_accelerate_prepared() -> None:
    fsdp_env = {"ACCELERATE_USE_FSDP": "true", "WORLD_SIZE": "2"}
    assert requested_engine(fsdp_env) == "fsdp"
    assert requested_engine({"ACCELERATE_USE_DEEPSPEED": "true"}) == "deepspeed"
    assert requested_engine({"WORLD_SIZE": "2"}) == "ddp"
    assert requested_engine({}) == "single"
    assert engine_of(_accelerator("FSDP")) == "fsdp"
    assert engine_of(_accelerator("MULTI_CPU")) == "ddp"
    assert engine_of(_accelerator("NO", 1)) == "single"
    assert check_engine(_accelerator("FSDP"), "M1", fsdp_env) == "fsdp"
    # accelerate on CPU processes: MULTI_CPU (DDP) although the config asked for FSDP.
    with pytest.raises(ConfigError, match=r"M1: the accelerate config asks for fsdp .* ddp"):
        check_engine(_accelerator("MULTI_CPU"), "M1", fsdp_env)
    with pytest.raises(ConfigError, match="asks for deepspeed"):
        check_engine(_accelerator("MULTI_GPU"), "cream/M2", {"ACCELERATE_USE_DEEPSPEED": "true"})
    assert check_engine(_accelerator("MULTI_CPU"), "M1", {"WORLD_SIZE": "2"}) == "ddp"


def test_launch_env_refuses_meta_loading() -> None:
    check_launch_env({"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "false"})
    with pytest.raises(ConfigError, match="cpu_ram_efficient_loading"):
        check_launch_env({"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"})


def _gathered_copy(model: Any) -> dict[str, Any]:
    """What a gather returns: every name its own full tensor (no shared storage)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_gathered_weights_save_as_the_same_checkpoint(tiny_model, tiny_tokenizer,
                                                      tmp_path) -> None:
    """A gathered state dict (copies per name, tied weights included) saves the same files,
    keys and values as the model's own save; DDP / single trainers gather nothing."""
    import torch
    from safetensors.torch import load_file

    from cream_plugin.loop.stages.sft import save_checkpoint

    assert tiny_model.config.tie_word_embeddings  # the case that needs retie
    calls: list[Any] = []

    class Acc(SimpleNamespace):
        def get_state_dict(self, model: Any) -> dict[str, Any]:
            calls.append(model)
            return _gathered_copy(model)

        def unwrap_model(self, model: Any) -> Any:
            return model

    trainer = SimpleNamespace(model=tiny_model, model_wrapped=tiny_model,
                              accelerator=Acc(**vars(_accelerator("FSDP"))))
    state = gathered_state_dict(trainer)
    assert state is not None and calls == [tiny_model]
    assert state["lm_head.weight"] is state["model.embed_tokens.weight"]  # tied again
    own, gathered = tmp_path / "own", tmp_path / "gathered"
    save_checkpoint(tiny_model, tiny_tokenizer)(own)
    save_checkpoint(tiny_model, tiny_tokenizer, state)(gathered)
    a, b = load_file(own / "model.safetensors"), load_file(gathered / "model.safetensors")
    assert a.keys() == b.keys() and "lm_head.weight" not in b
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.loads((gathered / "config.json").read_text())["architectures"] == [
        "LlamaForCausalLM"]
    trainer.accelerator = Acc(**vars(_accelerator("MULTI_CPU")))
    assert gathered_state_dict(trainer) is None
    trainer.accelerator = Acc(**vars(_accelerator("DEEPSPEED")))
    trainer.deepspeed = tiny_model
    assert gathered_state_dict(trainer) is not None and calls[-1] is tiny_model


def test_retie_leaves_untied_models_alone(tiny_model) -> None:
    state = {"model.norm.weight": tiny_model.model.norm.weight.detach().clone()}
    assert retie(dict(state), tiny_model).keys() == state.keys()


def test_auto_and_cuda_mean_this_processes_gpu_under_a_launcher(monkeypatch) -> None:
    import torch

    from cream_plugin.forward.models import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert pick_device("auto") == pick_device("cuda") == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert pick_device("auto") == pick_device("cuda") == "cuda:3"
    assert pick_device("cuda:1") == "cuda:1" and pick_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"


def test_bf16_models_score_and_sample_on_cpu(tiny_model_dir: Path) -> None:
    """The bf16 path of the GPU check, on CPU: weights load in bf16 on the chosen device, and
    scoring and sampling run and agree with float32 within bf16's resolution."""
    import numpy as np
    import torch

    from cream_plugin.forward.logprobs import response_logps
    from cream_plugin.forward.models import load_model, load_tokenizer
    from cream_plugin.forward.sampling import HFSampler

    tok = load_tokenizer(str(tiny_model_dir))
    bf16 = load_model(str(tiny_model_dir), dtype="bfloat16", device="cpu")
    fp32 = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in bf16.parameters()} == {"cpu"}
    prompts = ["What is two plus three?", "Which gas do plants absorb?"]
    responses = [["Answer: 5", "The quick brown fox."], ["B carbon dioxide", "A. oxygen"]]
    kw: dict[str, Any] = dict(batch_size=4, max_length=64, progress=False)
    low = response_logps(bf16, tok, prompts, responses, **kw)
    high = response_logps(fp32, tok, prompts, responses, **kw)
    assert np.isfinite(low.sum).all()
    assert np.array_equal(low.num_tokens, high.num_tokens)
    np.testing.assert_allclose(low.sum, high.sum, rtol=0.05)
    out = HFSampler(bf16, tok, max_new_tokens=4, batch_size=4, progress=False).generate(
        prompts, 2, seed=3)
    assert len(out) == 2 and all(len(r) == 2 for r in out)
