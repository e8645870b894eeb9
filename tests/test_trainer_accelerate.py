"""CREAMTrainer under ``accelerate launch`` with two CPU processes (slow: spawns processes).

``accelerate launch --cpu --num_processes 2`` starts a single process on one machine (its CPU
launcher needs mpirun for more), so the test uses the torchrun launcher (``--multi_gpu``) with
no visible GPU and ``use_cpu=True`` in the config: two processes, gloo, DistributedType.MULTI_CPU.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("accelerate_train_cream.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(num_processes: int, model_dir: Path, out: Path, per_device_batch: int) -> None:
    out.mkdir(parents=True)
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu" if num_processes > 1
        else "--cpu",
        "--num_processes", str(num_processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        str(SCRIPT), str(model_dir), str(out), str(per_device_batch),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false",
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


@pytest.mark.slow
def test_two_processes_match_one_process(tiny_model_dir, tmp_path) -> None:
    pytest.importorskip("accelerate")
    import torch

    _launch(2, tiny_model_dir, tmp_path / "two", per_device_batch=2)
    _launch(1, tiny_model_dir, tmp_path / "one", per_device_batch=4)
    saved = {name: torch.load(tmp_path / name) for name in
             ("two/rank0.pt", "two/rank1.pt", "one/rank0.pt")}
    assert [s["num_processes"] for s in saved.values()] == [2, 2, 1]
    rank0, rank1, single = (s["state"] for s in saved.values())
    from transformers import AutoModelForCausalLM

    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert rank0.keys() == rank1.keys() == single.keys()
    assert any(not torch.equal(single[k], start[k]) for k in single)  # training moved weights
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks differ at {name}"
        torch.testing.assert_close(rank0[name], single[name], rtol=1e-4, atol=1e-6, msg=name)
