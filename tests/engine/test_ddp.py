"""2-process gloo DDP equals one process on the concatenated batch, for the methods whose loss couples
processes (DINO's centre, SimCLR's gathered negatives, MoCo v3's gathered keys, SwAV's Sinkhorn)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.fabric import Fabric

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import TINY, initial_state, one_step  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ddp(name: str, out: Path) -> dict[str, torch.Tensor]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(Path(__file__).parent / "ddp_worker.py"), name, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("name", sorted(TINY))
def test_two_process_ddp_step_equals_single_process_on_concatenated_batch(name, tmp_path):
    ddp = run_ddp(name, tmp_path / "ddp.pt")
    single = one_step(Fabric(accelerator="cpu", devices=1), name)
    start = initial_state(name)
    moved = [k for k, v in single.items() if k.startswith("backbone.") and not torch.allclose(v, start[k], atol=1e-4)]
    assert len(moved) > 10  # the step really changed the backbone
    for k, v in single.items():
        assert torch.allclose(v, ddp[k], atol=1e-6, rtol=1e-5), k


def test_dino_centre_is_all_reduced(tmp_path):
    single = one_step(Fabric(accelerator="cpu", devices=1), "dino")
    assert not torch.equal(single["loss_fn.center"], torch.zeros_like(single["loss_fn.center"]))
