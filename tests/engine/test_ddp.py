"""2-process gloo DDP equals one process on the concatenated batch, for the methods whose loss couples
processes (DINO's centre, SimCLR's gathered negatives, MoCo v3's gathered keys, SwAV's Sinkhorn)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.fabric import Fabric

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import TINY, build, fixed_views, initial_state, one_step  # noqa: E402

from selfsup.engine.optim import apply_schedules, clip_gradients, param_groups  # noqa: E402
from selfsup.methods.moco_v2 import moco_loss  # noqa: E402
from selfsup.methods.shuffled_bn import momentum_forward  # noqa: E402


def run_ddp(names: list[str], out: Path, backbone: str = "vit") -> dict[str, dict[str, torch.Tensor]]:
    """Rank 0's state after one 2-process step of each method, all in one launch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    # --standalone: the launcher binds a free port itself (a port picked here could be taken before it binds)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).parent / "ddp_worker.py"), ",".join(names), str(out), backbone]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return {name: torch.load(out / f"{name}.pt", weights_only=True) for name in names}


@pytest.fixture(scope="module")
def ddp_state(tmp_path_factory):
    """Rank 0's state after one 2-process step of every method, run once per module in one launch."""
    done: dict[str, dict[str, torch.Tensor]] = {}

    def get(name: str) -> dict[str, torch.Tensor]:
        if not done:
            done.update(run_ddp(sorted(set(TINY) - set(PER_PROCESS)), tmp_path_factory.mktemp("ddp")))
        return done[name]

    return get


# Methods whose loss is per process by design, as their official code computes it.
PER_PROCESS = {"dinov2": "KoLeo's nearest neighbours are searched within each process's batch (dinov2 koleo_loss.py, "
                         "on each GPU's [CLS] tokens); the rest of its loss is iBOT's, checked here"}


@pytest.mark.parametrize("name", sorted(TINY))
def test_two_process_ddp_step_equals_single_process_on_concatenated_batch(name, ddp_state):
    if name in PER_PROCESS:
        pytest.skip(PER_PROCESS[name])
    ddp = ddp_state(name)
    single = one_step(Fabric(accelerator="cpu", devices=1), name)
    start = initial_state(name)
    moved = [k for k, v in single.items() if k.startswith("backbone.") and not torch.allclose(v, start[k], atol=1e-4)]
    assert len(moved) > 10  # the step really changed the backbone
    for k, v in single.items():
        assert torch.allclose(v, ddp[k], atol=1e-6, rtol=1e-5), k


def test_dino_centre_is_all_reduced(ddp_state):
    """Two processes with different halves of the batch: the centre moves towards the teacher's mean output
    over the whole batch (main_dino.py's dist.all_reduce in update_center), not over rank 0's half."""
    centre = ddp_state("dino")["loss_fn.center"]  # (1, K), rank 0's
    method = build("dino")
    views = fixed_views(8, "dino")
    with torch.no_grad():
        teacher = method.teacher["head"](method.teacher["backbone"](torch.cat(views[:2])))  # (2*8, K)
        half = method.teacher["head"](method.teacher["backbone"](torch.cat([v[:4] for v in views[:2]])))
    m = TINY_CENTER_MOMENTUM
    assert torch.allclose(centre, (1 - m) * teacher.mean(0, keepdim=True), atol=1e-6)
    assert not torch.allclose(centre, (1 - m) * half.mean(0, keepdim=True), atol=1e-4)  # the halves differ


TINY_CENTER_MOMENTUM = 0.9  # DinoConfig's default, which TINY keeps


def emulated_moco_v2_step(batch: int = 8, world: int = 2) -> dict[str, torch.Tensor]:
    """MoCo v2 with per-process BatchNorm on `world` processes, emulated in one: each process's queries are
    normalised over its own share, its keys over a share of the batch shuffled across processes (builder.py
    `_batch_shuffle_ddp`), DDP averages the processes' gradients, and the queue takes every process's keys."""
    method = build("moco-v2", "resnet")
    perms = [torch.randperm(batch), torch.randperm(batch)]  # rank 0's draws in the two key forwards
    method.setup(total_steps=10, steps_per_epoch=5)
    optimizer = torch.optim.SGD(param_groups(method), lr=0.0)
    apply_schedules(optimizer, 0.5, 0.04)
    v0, v1 = fixed_views(batch, "moco-v2")
    share = batch // world

    def per_process(f, x):  # (batch, ...) -> f of each process's share, concatenated in rank order
        return torch.cat([f(c) for c in x.split(share)])

    def keys(x, perm):  # shuffled BN: process r encodes x[perm][r*share:(r+1)*share]; then unshuffled
        out = per_process(lambda c: momentum_forward(method.key_encoder, c), x[perm])
        return F.normalize(out[torch.argsort(perm)], dim=-1)

    query = lambda c: method.head(method.backbone(c))  # noqa: E731
    q0, q1 = per_process(query, v0), per_process(query, v1)
    k1, k0 = keys(v1, perms[0]), keys(v0, perms[1])  # pairs (query 0, key 1) then (query 1, key 0)
    t = method.cfg.temperature
    losses = [(moco_loss(a, b, method.queue, t) + moco_loss(c, d, method.queue, t)) / 2
              for a, b, c, d in zip(q0.split(share), k1.split(share), q1.split(share), k0.split(share), strict=True)]
    (sum(losses) / world).backward()  # DDP's average of the processes' gradients
    clip_gradients(method, 3.0)
    optimizer.step()
    method._new_keys = torch.cat([k1, k0])  # gathered keys, view by view, rank order within a view
    method.on_after_step(0)
    return {k: v.detach().clone() for k, v in method.state_dict().items()}


def test_moco_v2_resnet_with_shuffled_batch_norm_on_two_processes(tmp_path):
    """ResNet-18 with per-process BatchNorm, MoCo v2's shuffled BN for the keys: the 2-process step equals its
    emulation in one process. Running statistics are left out: rank 0's come from its share only."""
    ddp = run_ddp(["moco-v2"], tmp_path, backbone="resnet")["moco-v2"]
    want = emulated_moco_v2_step()
    start = build("moco-v2", "resnet").state_dict()
    assert not torch.allclose(want["queue"], start["queue"]) and int(want["queue_ptr"]) == 16
    compared = [k for k in want if "running_" not in k and "num_batches" not in k]
    moved = [k for k in compared if k.startswith("backbone.") and not torch.allclose(want[k], start[k], atol=1e-5)]
    assert len(moved) > 30
    for k in compared:
        assert torch.allclose(want[k], ddp[k], atol=5e-5, rtol=1e-4), k  # moves are 1e-2 to 1
