"""FSDP2 training stages on 2 CPU processes (slow): ``cream run --accelerate-config fsdp``
against a plain 1-process run, with a SIGKILL and a resume in between.

accelerate 1.x applies FSDP to GPU/XPU/NPU processes only: with CPU processes it picks
MULTI_CPU (DDP) and drops the FSDP plugin, which ``check_engine`` turns into an error. The
test sets CREAM_TEST_FSDP_ON_CPU=1 (:func:`cream_plugin.testing.allow_fsdp_on_cpu`) to put
FSDP back after accelerate's choice; from there on model preparation (``fully_shard``), the
optimizer and the state-dict gathering are accelerate's and torch's own FSDP2 code over gloo.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from cream_plugin.testing import ENV_FSDP_ON_CPU, offline_env

RUN = ["run", "--preset", "smoke", "--method", "cream,scir", "--set", "iterations=1",
       "--set", "evaluation.tasks=[cream_arc_easy]", "--set", "evaluation.limit=1"]
CHECKPOINTS = ("M1", "cream/M2", "scir/M2")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cream(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cream_plugin.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_fsdp_two_processes_train_save_and_resume_like_one(data_dir, tmp_path) -> None:
    """SFT, CREAM and SCIR under FSDP2 on 2 processes: the run is killed (SIGKILL) while it
    writes scir/M2 and resumed; M1 and cream/M2 are reused, and every checkpoint is a full
    safetensors file with the keys of a 1-process run and weights equal within float tolerance
    (the gradient reduction sums in another order; measured max |dw| 6.3e-7)."""
    pytest.importorskip("accelerate")
    import torch
    from safetensors.torch import load_file

    cache = os.environ.get("CREAM_CACHE_DIR") or str(tmp_path / "cache")
    env = offline_env(data_dir, cache, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("CREAM_FAULT_STAGE", None)
    one, two = tmp_path / "one", tmp_path / "two"
    fsdp = [*RUN, "--output", str(two), "--accelerate-config", "fsdp", "--num-processes", "2",
            "--launch-arg=--mixed_precision=no"]

    # Without the testing aid accelerate gives CPU processes DDP: the run stops, named.
    plain = _cream([*fsdp, f"--launch-arg=--main_process_port={_free_port()}",
                    "--output", str(tmp_path / "refused")], env)
    assert plain.returncode != 0
    assert "M1: the accelerate config asks for fsdp but accelerate prepared the model with " \
        "ddp" in plain.stdout + plain.stderr  # the ranks' output: stdout or stderr

    fenv = {**env, ENV_FSDP_ON_CPU: "1"}
    killed = _cream([*fsdp, f"--launch-arg=--main_process_port={_free_port()}"],
                    {**fenv, "CREAM_FAULT_STAGE": "scir/M2"})
    assert killed.returncode != 0, killed.stderr[-3000:]
    assert "fault injection: killing the run inside stage scir/M2" in killed.stdout + killed.stderr
    assert not (two / "scir" / "M2" / "model.safetensors").exists()
    manifests = {k: (two / f"{k}.manifest.json").read_bytes() for k in ("M1", "cream/M2")}
    resumed = _cream([*fsdp, f"--launch-arg=--main_process_port={_free_port()}"], fenv)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-6000:]
    assert "training engine fsdp on 2 process(es)" in resumed.stdout + resumed.stderr
    assert "M1: training engine" not in resumed.stdout + resumed.stderr  # reused, not trained again
    assert {k: (two / f"{k}.manifest.json").read_bytes() for k in manifests} == manifests

    single = _cream([*RUN, "--output", str(one)], env)
    assert single.returncode == 0, single.stderr[-6000:]
    for name in ("prompts", "shared/iter1/samples", "shared/iter1/logps-M0"):
        assert (one / f"{name}.jsonl").read_bytes() == (two / f"{name}.jsonl").read_bytes(), name
    for name in CHECKPOINTS:
        wa = load_file(str(one / name / "model.safetensors"))
        wb = load_file(str(two / name / "model.safetensors"))
        assert wa.keys() == wb.keys(), name  # full, and tied weights left out as usual
        for key in wa:
            assert wb[key].shape == wa[key].shape
            torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=1e-5,
                                       msg=f"{name} {key}")
        config = json.loads((two / name / "config.json").read_text())
        assert config["architectures"] == ["LlamaForCausalLM"]  # not FSDPLlamaForCausalLM
    log_one = json.loads((one / "cream" / "M2.train_log.json").read_text())
    log_two = json.loads((two / "cream" / "M2.train_log.json").read_text())
    assert [r.get("step") for r in log_one] == [r.get("step") for r in log_two]

