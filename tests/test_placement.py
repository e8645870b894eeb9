"""Scoring placement for models larger than one device: the auto rule, the refusal of runs
that would still load such a model whole, the vLLM options' path to the engine, and FSDP2
sharded scoring equal to the replica's (one process here; two in the slow test)."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from cream_plugin.config import ModelConfig, load_config
from cream_plugin.errors import ConfigError
from cream_plugin.forward import placement
from cream_plugin.testing import offline_env

GB = 10**9


def test_auto_keeps_a_replica_until_the_weights_crowd_one_device() -> None:
    assert placement.choose_placement(16 * GB, 80 * GB, 8) == "replica"  # 8B bf16 on an H100
    assert placement.choose_placement(141 * GB, 80 * GB, 8) == "sharded"  # 70B bf16
    assert placement.choose_placement(49 * GB, 80 * GB, 8) == "sharded"  # no room for batches
    assert placement.choose_placement(141 * GB, 80 * GB, 1) == "replica"  # nothing to shard
    assert placement.choose_placement(None, 80 * GB, 8) == "replica"  # size unknown


def test_resolve_placement_follows_the_config_and_the_process_count() -> None:
    sharded = ModelConfig(name="tiny-random", scoring_placement="sharded")
    assert placement.resolve_placement(sharded, 2) == "sharded"
    assert placement.resolve_placement(sharded, 1) == "replica"
    auto_cpu = ModelConfig(name="tiny-random", device="cpu")
    assert placement.resolve_placement(auto_cpu, 8) == "replica"  # CPU ranks share one memory


def test_parameter_count_comes_from_the_config_alone(tiny_model_dir: Path) -> None:
    from cream_plugin.forward.models import load_model

    loaded = load_model(str(tiny_model_dir), device="cpu")
    count = placement.parameter_count(ModelConfig(name=str(tiny_model_dir)))
    assert count is not None
    assert count == sum(p.numel() for p in loaded.parameters())
    assert placement.weight_bytes(ModelConfig(name=str(tiny_model_dir), dtype="bfloat16")) == \
        2 * count
    gguf = ModelConfig(name=str(tiny_model_dir / "model.gguf"))
    with pytest.raises(Exception, match="does not exist"):
        placement.parameter_count(gguf)


def test_a_model_too_large_for_one_gpu_is_refused_where_a_stage_loads_it_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(placement, "device_bytes", lambda device: 80 * GB)
    monkeypatch.setattr(placement, "weight_bytes", lambda model: 141 * GB)
    model = ModelConfig(name="meta-llama/Llama-3.1-70B-Instruct", dtype="bfloat16")
    with pytest.raises(ConfigError) as info:
        placement.check_sharded_run(model, 8, sampling_backend="hf", evaluator="lm-eval",
                                    engine="ddp")
    message = str(info.value)
    for named in ("sampling.backend=hf", "evaluation.evaluator=lm-eval", "training under ddp",
                  "tensor_parallel_size", "Llama-3.1-70B"):
        assert named in message
    # vLLM for the generating stages and FSDP for training: nothing loads it whole.
    placement.check_sharded_run(model, 8, sampling_backend="vllm", evaluator="vllm",
                                engine="fsdp")
    # The user chose a replica: their call.
    placement.check_sharded_run(ModelConfig(name=model.name, scoring_placement="replica"), 8,
                                sampling_backend="hf", evaluator="lm-eval", engine="ddp")


def test_placement_and_vllm_options_change_no_stage_hash() -> None:
    plain = load_config(overrides=[])
    moved = load_config(overrides=["model.scoring_placement=sharded",
                                   "model.vllm_options={tensor_parallel_size: 8}"])
    assert moved.model.vllm_options == {"tensor_parallel_size": 8}
    assert plain.section_hash("model") == moved.section_hash("model")
    with pytest.raises(ConfigError, match="scoring_placement"):
        load_config(overrides=["model.scoring_placement=everywhere"])


def test_vllm_options_reach_every_engine_of_the_run(tmp_path: Path) -> None:
    from cream_plugin.loop.context import RunContext
    from cream_plugin.loop.distributed import DistContext

    started: list[dict[str, Any]] = []

    class FakeEngine:
        start_seconds = 1.0
        closed = False

        def __init__(self, path: str, **options: Any) -> None:
            started.append(options)

        def close(self) -> None:
            self.closed = True

    config = load_config(overrides=["model.vllm_options={tensor_parallel_size: 8}",
                                    "model.dtype=bfloat16"])
    ctx = RunContext(config, tmp_path, DistContext())
    ctx.engine_factory = FakeEngine
    ctx.vllm_engine("M0")
    assert started == [{"dtype": "bfloat16", "tensor_parallel_size": 8}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sharded_scoring_equals_the_replica_in_one_process(tiny_model, tiny_tokenizer) -> None:
    """FSDP2 on a one-process gloo group: the same forward through gathered layers."""
    import torch.distributed as dist

    from cream_plugin.forward.logprobs import response_logps

    prompts = [f"Question {i}: what is {i} plus {i * 3}?" for i in range(4)]
    responses = [[f"It is {4 * i}.", "No idea at all", f"{i}" * (i + 1)] for i in range(4)]
    kw: dict[str, Any] = dict(batch_size=3, max_length=64, progress=False)
    replica = response_logps(tiny_model, tiny_tokenizer, prompts, responses, **kw)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)
    try:
        model = placement.shard_for_scoring(copy.deepcopy(tiny_model), "cpu", 1)
        from torch.distributed.fsdp import FSDPModule

        assert isinstance(model, FSDPModule)
        units = [m for m in cast(Any, model).modules() if isinstance(m, FSDPModule)]
        assert len(units) > 1  # one per decoder layer, plus the root
        sharded = response_logps(model, tiny_tokenizer, prompts, responses, **kw)
    finally:
        dist.destroy_process_group()
    np.testing.assert_allclose(sharded.sum, replica.sum, rtol=0, atol=1e-5)
    assert np.array_equal(sharded.num_tokens, replica.num_tokens)


@pytest.mark.slow
def test_two_processes_score_a_sharded_model_like_one_replica(data_dir, tmp_path) -> None:
    """``cream run`` on 2 CPU processes with ``model.scoring_placement=sharded``: every
    log-prob table (M0's and every checkpoint's) equals a 1-process run's within float32
    tolerance for sums of ~-100: the sharded forward gathers the same weights, but M1 itself was
    trained under DDP on 2 processes, so checkpoints differ in the last bits."""
    pytest.importorskip("accelerate")
    cache = os.environ.get("CREAM_CACHE_DIR") or str(tmp_path / "cache")
    env = offline_env(data_dir, cache, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("CREAM_FAULT_STAGE", None)
    run = ["run", "--preset", "smoke", "--method", "cream", "--set", "iterations=1",
           "--set", "evaluation.tasks=[cream_arc_easy]", "--set", "evaluation.limit=1"]
    one, two = tmp_path / "one", tmp_path / "two"
    cli = [sys.executable, "-m", "cream_plugin.cli"]
    logs: list[str] = []
    for cmd in (
        [*cli, *run, "--output", str(two), "--accelerate-config", "multi_gpu",
         "--num-processes", "2", "--launch-arg=--mixed_precision=no",
         f"--launch-arg=--main_process_port={_free_port()}",
         "--set", "model.scoring_placement=sharded"],
        [*cli, *run, "--output", str(one)],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
        logs.append(done.stdout + done.stderr)
    assert "FSDP2-sharded across 2 processes" in logs[0]
    assert "FSDP2-sharded" not in logs[1]
    tables = sorted(p.relative_to(one) for p in one.rglob("logps-*.jsonl"))
    assert tables, "the run scored nothing"
    for name in tables:
        a = [json.loads(x) for x in (one / name).read_text().splitlines()]
        b = [json.loads(x) for x in (two / name).read_text().splitlines()]
        assert [r["prompt_id"] for r in a] == [r["prompt_id"] for r in b], name
        assert [r["num_tokens"] for r in a] == [r["num_tokens"] for r in b], name
        np.testing.assert_allclose([r["logps"] for r in b], [r["logps"] for r in a],
                                   rtol=1e-5, atol=1e-4, err_msg=str(name))
