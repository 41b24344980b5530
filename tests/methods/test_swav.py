import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from selfsup.methods.swav import SwAV, SwAVConfig, sinkhorn, swapped_prediction
from selfsup.models.vit import VisionTransformer


def sinkhorn_loop(scores: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Sinkhorn-Knopp exactly as the official distributed_sinkhorn (one process), in Python doubles."""
    n, k = scores.shape
    q = [[math.exp(float(scores[b, j]) / eps) for b in range(n)] for j in range(k)]  # K x N
    total = sum(map(sum, q))
    q = [[x / total for x in row] for row in q]
    for _ in range(iters):
        for j in range(k):  # each prototype: mass 1/K
            r = sum(q[j])
            q[j] = [x / r / k for x in q[j]]
        for b in range(n):  # each sample: mass 1/N
            c = sum(q[j][b] for j in range(k))
            for j in range(k):
                q[j][b] = q[j][b] / c / n
    return torch.tensor([[q[j][b] * n for j in range(k)] for b in range(n)], dtype=torch.float64)


def cosine_scores(n: int, k: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    c = F.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=1)
    return z @ c.T  # (N, K) in [-1, 1], like the method's scores


@pytest.mark.parametrize("eps,iters", [(0.05, 3), (0.1, 1), (0.5, 5)])
def test_sinkhorn_matches_a_direct_loop(eps, iters):
    s = cosine_scores(6, 4)
    want = sinkhorn_loop(s, eps, iters)
    assert torch.allclose(sinkhorn(s, eps, iters), want, rtol=1e-9, atol=1e-12)
    assert torch.allclose(sinkhorn(s.float(), eps, iters).double(), want, rtol=1e-4, atol=1e-6)


def test_sinkhorn_meets_both_marginals_after_enough_iterations():
    n, k = 12, 4
    s = cosine_scores(n, k, seed=1)
    q = sinkhorn(s, 0.1, 200)
    assert torch.allclose(q, sinkhorn_loop(s, 0.1, 200), rtol=1e-9, atol=1e-12)
    assert torch.allclose(q.sum(1), torch.ones(n, dtype=torch.float64))  # each sample: a distribution
    assert torch.allclose(q.sum(0), torch.full((k,), n / k, dtype=torch.float64), atol=1e-6)  # equipartition
    few = sinkhorn(s, 0.1, 1)
    assert torch.allclose(few.sum(1), torch.ones(n, dtype=torch.float64))
    assert (few.sum(0) - n / k).abs().max() > (q.sum(0) - n / k).abs().max()


def test_sinkhorn_is_batched_and_does_not_overflow_in_float32():
    s = torch.stack([cosine_scores(6, 4, seed=2), cosine_scores(6, 4, seed=3)])  # (2, N, K)
    got = sinkhorn(s, 0.05, 3)
    for i in range(2):
        assert torch.allclose(got[i], sinkhorn(s[i], 0.05, 3))
    # exp(1 / 0.01) overflows float32 (the official code would give NaN); the shift by the maximum does not
    small = sinkhorn(s[0].float(), 0.01, 3)
    assert torch.isfinite(small).all()
    assert torch.allclose(small.double(), sinkhorn_loop(s[0], 0.01, 3), atol=1e-4)


def swav_loss_loop(scores, codes, n_views, temperature):
    """The official loss: for each assignment crop i, mean over crops v != i of -mean_b sum_k q log p_v."""
    g, b, k = codes.shape
    loss = 0.0
    for i in range(g):
        sub = 0.0
        for v in range(n_views):
            if v == i:
                continue
            for n in range(b):
                row = [float(scores[v * b + n, j]) / temperature for j in range(k)]
                lse = math.log(sum(math.exp(x) for x in row))
                sub -= sum(float(codes[i, n, j]) * (row[j] - lse) for j in range(k)) / b
        loss += sub / (n_views - 1)
    return loss / g


@pytest.mark.parametrize("n_views,n_global", [(2, 2), (5, 2), (3, 1)])
def test_swapped_prediction_matches_the_paper_formula(n_views, n_global):
    b, k = 3, 5
    scores = cosine_scores(n_views * b, k, seed=4)
    codes = sinkhorn(scores[: n_global * b].view(n_global, b, k), 0.05, 3)
    got = swapped_prediction(scores, codes, 0.1)
    assert got.item() == pytest.approx(swav_loss_loop(scores, codes, n_views, 0.1), rel=1e-6)


def tiny_swav(**kw) -> SwAV:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)
    cfg = {"proj_hidden_dim": 32, "proj_output_dim": 16, "n_prototypes": 8, "head_bn": False,
           "freeze_prototypes_iters": 0, **kw}
    return SwAV(vit, SwAVConfig(**cfg))


def multicrop_views(b: int = 4, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 1, 16, 16, generator=g) for _ in range(2)] + [torch.randn(b, 1, 8, 8, generator=g)]


def train(method: SwAV, steps: int, views=None) -> list[torch.Tensor]:
    """AdamW steps with the engine's hooks; returns the prototypes after each step."""
    opt = torch.optim.AdamW(method.parameters(), lr=1e-2, weight_decay=0.1)
    seen = []
    for step in range(steps):
        loss, _ = method(views or multicrop_views(seed=step), step)
        opt.zero_grad()
        loss.backward()
        method.on_after_backward(step)
        opt.step()
        method.on_after_step(step)
        seen.append(method.prototypes.weight.detach().clone())
    return seen


def test_forward_gives_a_loss_gradients_and_diagnostics():
    method = tiny_swav()
    loss, logs = method(multicrop_views(), 0)
    loss.backward()
    assert loss.item() > 0 and 0 < logs["emb_std"] < 1
    assert 0 < logs["code_entropy"] < logs["log_K"] == pytest.approx(math.log(8))
    assert 0 < logs["proto_used"] <= 1
    assert method.backbone.cls_token.grad is not None and method.prototypes.weight.grad is not None


def test_identical_images_read_as_collapse():
    method = tiny_swav().eval()
    _, logs = method([torch.ones(4, 1, 16, 16)] * 2 + [torch.ones(4, 1, 8, 8)], 0)
    assert logs["code_entropy"] == pytest.approx(math.log(8), rel=1e-4)  # uniform codes
    assert logs["proto_used"] == pytest.approx(1 / 8)


def test_prototypes_stay_unit_norm():
    method = tiny_swav()
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(8))
    for w in train(method, 3):
        assert torch.allclose(w.norm(dim=1), torch.ones(8), atol=1e-6)
    assert torch.allclose(tiny_swav().state_dict()["prototypes.weight"].norm(dim=1), torch.ones(8))


def test_prototypes_frozen_during_the_first_iterations():
    method = tiny_swav(freeze_prototypes_iters=2)
    start = method.prototypes.weight.detach().clone()
    block = method.backbone.blocks[0].attn.qkv.weight.detach().clone()
    seen = train(method, 3)
    # unchanged but for the re-normalisation's rounding: no update, not even weight decay
    assert torch.allclose(seen[0], start, rtol=0, atol=1e-7) and torch.allclose(seen[1], start, rtol=0, atol=1e-7)
    assert (seen[2] - start).abs().max() > 1e-3
    assert not torch.allclose(method.backbone.blocks[0].attn.qkv.weight, block)


def test_queue_is_a_fifo_of_gathered_projections_filled_from_its_start_epoch():
    method = tiny_swav(queue_length=10, queue_start_epochs=1.0)
    method.setup(total_steps=20, steps_per_epoch=2)
    assert "queue" in method.state_dict() and method.queue.shape == (2, 10, 16)
    pending = []
    for step in range(6):
        method(multicrop_views(seed=step), step)
        pending.append(method._pending.transpose(0, 1).clone())  # (G, B, d) this step's global crops
        assert torch.allclose(pending[-1].norm(dim=-1), torch.ones(2, 4))
        method.on_after_step(step)
        if step < 2:
            assert not method.queue.any()  # before queue_start_epochs
    # steps 2..5 enqueued, newest first; 10 rows keep steps 5, 4 and half of 3
    want = torch.cat([pending[5], pending[4], pending[3]], dim=1)[:, :10]
    assert torch.equal(method.queue, want)
    assert method.queue_full()


def test_queue_codes_only_improve_the_batch_codes_and_are_not_in_the_loss():
    method = tiny_swav(queue_length=6, sinkhorn_iterations=3)
    views = multicrop_views()
    loss_without, _ = method(views, 0)
    assert not method.queue_full()
    g = torch.Generator().manual_seed(9)
    queue = F.normalize(torch.randn(2, 6, 16, generator=g), dim=-1)
    method.load_state_dict({**method.state_dict(), "queue": queue})  # as a resume sets it (queue_full reads it)
    loss, _ = method(views, 0)
    with torch.no_grad():  # the expected loss: Sinkhorn on queue + batch, then only the batch's codes
        z = F.normalize(method.projector(torch.cat([method.backbone(torch.cat(views[:2])),
                                                    method.backbone(views[2])])), dim=-1)
        scores = method.prototypes(z)  # (3*4, K)
        w = method.prototypes.weight
        s = torch.cat([method.queue @ w.T, z[:8].view(2, 4, -1) @ w.T], dim=1)  # (2, 6 + 4, K)
        codes = sinkhorn(s, 0.05, 3)[:, 6:]
    assert loss.item() == pytest.approx(swapped_prediction(scores, codes, 0.1).item(), rel=1e-5)
    assert loss.item() != pytest.approx(loss_without.item(), rel=1e-4)  # the queue changed the codes


def test_the_queue_is_full_once_its_last_slot_is_filled_also_after_a_resume():
    """queue_full follows the FIFO on the host (no device read a step): full when the official `use_the_queue`
    is (its last slot non-zero), and from a loaded state it counts on from the slots that state filled."""
    method = tiny_swav(queue_length=8, queue_start_epochs=0)
    method.setup(total_steps=10, steps_per_epoch=5)
    full = []
    for step in range(3):  # 4 assignment features a step: full after the second
        method(multicrop_views(seed=step), step)
        if step == 0:
            saved = {k: v.clone() for k, v in method.state_dict().items()}
        full.append(method.queue_full())
        method.on_after_step(step)
        assert method.queue_full() == bool(method.queue[:, -1].any())
    assert full == [False, False, True]
    resumed = tiny_swav(queue_length=8, queue_start_epochs=0)
    resumed.setup(total_steps=10, steps_per_epoch=5)
    resumed.load_state_dict(saved)  # before the first step's enqueue: empty
    resumed(multicrop_views(seed=0), 0)
    resumed.on_after_step(0)
    assert not resumed.queue_full()
    resumed.load_state_dict(method.state_dict())  # a full queue
    assert resumed.queue_full()


def test_loss_goes_down_with_the_queue_in_use_without_collapse():
    # BatchNorm in the head, as the paper: without it this tiny ViT starts with nearly equal embeddings
    # (emb_std ~0.02), the codes are uniform from the first step and SwAV collapses (loss -> log K)
    method = tiny_swav(queue_length=8, queue_start_epochs=0, head_bn=True)
    views = multicrop_views()
    opt = torch.optim.AdamW(method.parameters(), lr=1e-3)
    losses = []
    for step in range(12):
        loss, logs = method(views, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.on_after_step(step)
        losses.append(loss.item())
    assert method.queue_full() and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) < sum(losses[:3]) and losses[-1] < logs["log_K"] * 0.8, losses
    assert logs["emb_std"] > 0.1 and logs["code_entropy"] < 0.8 * logs["log_K"]


# -- two processes: codes (hence loss) and queue equal those of one process on the concatenated batch ----

def queue_run(batch: int = 8) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """One forward + queue update with a full queue of 7 rows (uneven split over 2 processes)."""
    method = tiny_swav(queue_length=7, queue_start_epochs=0)
    method.queue.copy_(F.normalize(torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(5)), dim=-1))
    r, w = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    share = batch // w
    loss, logs = method([v[r * share:(r + 1) * share] for v in multicrop_views(batch)], 0)
    method.on_after_step(0)
    return loss.detach(), logs, method.queue.clone()


def test_two_processes_give_the_codes_and_queue_of_the_concatenated_batch(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", __file__, str(tmp_path / "ddp.pt")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    loss, logs, queue = queue_run()
    assert ddp["loss"].item() == pytest.approx(loss.item(), rel=1e-5)  # mean of the two halves' losses
    assert ddp["code_entropy"].item() == pytest.approx(logs["code_entropy"], rel=1e-5)
    assert ddp["proto_used"].item() == pytest.approx(logs["proto_used"])
    assert torch.allclose(ddp["queue"], queue, atol=1e-6)


if __name__ == "__main__":  # the worker of the test above, under torch.distributed.run
    dist.init_process_group("gloo")
    loss, logs, queue = queue_run()
    stats = torch.tensor([loss.item(), logs["code_entropy"]], dtype=torch.float64)
    dist.all_reduce(stats)
    if dist.get_rank() == 0:
        torch.save({"loss": stats[0] / 2, "code_entropy": stats[1] / 2,
                    "proto_used": torch.tensor(logs["proto_used"]), "queue": queue}, Path(sys.argv[1]))
    dist.destroy_process_group()
