import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from selfsup.data import load_data
from selfsup.engine.optim import build_optimizer
from selfsup.methods.distributed import shuffle_batch, unshuffle_batch
from selfsup.methods.moco_v2 import MoCoV2, MoCoV2Config, moco_loss
from selfsup.methods.shuffled_bn import has_local_batch_norm, momentum_forward
from selfsup.models.resnet import ResNet

TINY = {"proj_hidden_dim": 16, "proj_output_dim": 8}


def moco_loss_loop(q, k, queue, t):
    """The paper's l_q = -log exp(q.k+/t) / (exp(q.k+/t) + sum_j exp(q.n_j/t)), averaged over the queries."""
    q, k, queue = (F.normalize(x.double(), dim=-1) for x in (q, k, queue))
    total = 0.0
    for i in range(len(q)):
        pos = math.exp(float(q[i] @ k[i]) / t)
        neg = sum(math.exp(float(q[i] @ n) / t) for n in queue)
        total += -math.log(pos / (pos + neg))
    return total / len(q)


@pytest.mark.parametrize("t", [0.07, 0.2])
def test_loss_matches_the_paper_formula(t):
    g = torch.Generator().manual_seed(0)
    q, k, queue = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g), torch.randn(11, 8, generator=g)
    assert moco_loss(q, k, queue, t).item() == pytest.approx(moco_loss_loop(q, k, queue, t), rel=1e-5)


def test_loss_ignores_the_other_keys_of_the_batch():
    """Only the queue provides negatives: a query's loss does not change with the other images' keys."""
    g = torch.Generator().manual_seed(1)
    q, k, queue = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g), torch.randn(6, 8, generator=g)
    k2 = torch.cat([k[:1], torch.randn(3, 8, generator=g)])
    first = [moco_loss(q[:1], kk[:1], queue, 0.2).item() for kk in (k, k2)]
    assert first[0] == pytest.approx(first[1], rel=1e-6)


def method(vit, **cfg) -> MoCoV2:
    torch.manual_seed(0)
    m = MoCoV2(vit, MoCoV2Config(**{**TINY, **cfg}))
    m.setup(total_steps=10, steps_per_epoch=5)
    return m


def test_queue_is_a_fifo_whose_pointer_wraps(tiny_vit):
    m = method(tiny_vit, queue_size=6)
    batches = [torch.full((4, 8), float(i)) for i in (1, 2, 3)]
    m.enqueue(batches[0])
    assert m.queue_ptr.item() == 4 and m.queue[:4].eq(1).all() and not m.queue[4:].eq(1).any()
    m.enqueue(batches[1])  # rows 4, 5, then wraps to 0, 1
    assert m.queue_ptr.item() == 2
    assert m.queue[:, 0].tolist() == [2, 2, 1, 1, 2, 2]
    m.enqueue(batches[2])  # the oldest (rows 2-5) are replaced
    assert m.queue_ptr.item() == 0 and m.queue[:, 0].tolist() == [2, 2, 3, 3, 3, 3]
    m.enqueue(torch.arange(8.0)[:, None].expand(8, 8))  # more keys than the queue: the newest 6 are kept
    assert m.queue_ptr.item() == 0 and m.queue[:, 0].tolist() == [2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("symmetric", [True, False])
def test_step_enqueues_the_normalised_keys_view_by_view(tiny_vit, symmetric):
    m = method(tiny_vit, queue_size=32, symmetric=symmetric)
    views = [torch.randn(4, 1, 16, 16) for _ in range(2)]
    k1, k2 = m.keys(views[0]), m.keys(views[1])
    before = m.queue.clone()
    loss, logs = m(views, 0)
    q1, q2 = (m.head(m.backbone(v)) for v in views)
    expected = moco_loss(q1, k2, before, 0.2)
    if symmetric:
        expected = (expected + moco_loss(q2, k1, before, 0.2)) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(m.queue, before)  # the queue changes only after the optimiser step
    loss.backward()
    assert all(p.grad is None for p in m.key_encoder.parameters())
    m.on_after_step(0)
    new = [k2, k1] if symmetric else [k2]
    n = 4 * len(new)
    assert m.queue_ptr.item() == n
    assert torch.allclose(m.queue[:n], torch.cat(new), atol=1e-6)
    assert torch.allclose(m.queue[:n].norm(dim=-1), torch.ones(n))
    assert torch.equal(m.queue[n:], before[n:])


@pytest.mark.parametrize("cosine", [False, True])
def test_key_encoder_is_an_ema_with_the_configured_momentum(tiny_vit, cosine):
    m = method(tiny_vit, momentum=0.9, momentum_cosine=cosine)
    assert m.schedule_values(0)["momentum"] == pytest.approx(0.9)
    assert m.schedule_values(9)["momentum"] == pytest.approx(1.0 if cosine else 0.9)
    key = m.key_encoder["head"][0].weight
    old = key.clone()
    with torch.no_grad():
        m.head[0].weight.add_(1.0)  # as if an optimiser step moved the query encoder
    m.on_after_step(0)
    assert torch.allclose(key, 0.9 * old + 0.1 * m.head[0].weight, atol=1e-6)


def test_shuffle_then_unshuffle_is_the_identity_on_one_process():
    torch.manual_seed(0)
    x = torch.randn(16, 3)
    shuffled, inverse = shuffle_batch(x)
    assert not torch.equal(shuffled, x)
    assert torch.equal(shuffled.sort(0).values, x.sort(0).values)
    assert torch.equal(unshuffle_batch(shuffled * 2, inverse), x * 2)


def test_shuffled_bn_only_with_per_process_batch_norm(tiny_vit):
    assert not has_local_batch_norm(method(tiny_vit, proj_bn=False).key_encoder)
    assert has_local_batch_norm(method(tiny_vit).key_encoder)  # the head's BatchNorm
    resnet = ResNet(depth=18, in_chans=1, small_stem=True)
    assert has_local_batch_norm(resnet)
    assert not has_local_batch_norm(torch.nn.SyncBatchNorm.convert_sync_batchnorm(resnet))


def _shuffle_worker(r: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=r, world_size=world)
    torch.manual_seed(r)  # the permutation must come from rank 0 whatever the other ranks draw
    x = torch.arange(4.0)[:, None] + 10 * r  # this process's samples: 10r .. 10r+3
    shuffled, inverse = shuffle_batch(x)
    torch.manual_seed(r)  # the same permutation again, through a key encoder with BatchNorm
    keys = momentum_forward(torch.nn.ModuleDict({"bn": torch.nn.BatchNorm1d(1, affine=False)}), x)
    out[r] = (shuffled.flatten().tolist(), unshuffle_batch(shuffled * 2 + 1, inverse).flatten().tolist(),
              keys.flatten().tolist())
    dist.destroy_process_group()


def test_shuffle_across_two_processes_mixes_the_global_batch_and_is_undone():
    """Each process encodes a share of a permutation of the global batch (a partition of it, mixing the
    processes' samples); unshuffling the encoded share gives back this process's samples in order. A key
    encoder with BatchNorm normalises each sample with the statistics of its shuffled share."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_shuffle_worker, args=(2, port, out), nprocs=2)
    shares = [out[r][0] for r in range(2)]
    assert sorted(shares[0] + shares[1]) == [0, 1, 2, 3, 10, 11, 12, 13]
    assert set(shares[0]) != {0, 1, 2, 3}  # seed-dependent: mixed for this seed
    keys = {}
    for r in range(2):
        assert out[r][1] == [2 * (i + 10 * r) + 1 for i in range(4)]
        keys.update(zip([i + 10 * r for i in range(4)], out[r][2], strict=True))
    for share in shares:
        t = torch.tensor(share)
        expected = (t - t.mean()) / (t.var(unbiased=False) + 1e-5).sqrt()
        assert torch.allclose(torch.tensor([keys[v] for v in share]), expected, atol=1e-5)


def test_loss_goes_down_when_the_queue_holds_other_images(tiny_vit):
    """Twenty steps on fixed views of 32 digits, the queue refilled each step with keys of 256 other digits
    (a data set much larger than the queue, as in training): the queries learn to pick their own key."""
    torch.manual_seed(0)
    images = load_data("digits").train.images[:288].float() / 255
    small = F.interpolate(images, size=16, mode="bilinear", antialias=True)
    views, others = [small[:32], small[:32].flip(-1)], small[32:]
    m = method(tiny_vit, queue_size=256, momentum=0.9)
    m.setup(total_steps=20, steps_per_epoch=10)
    opt = build_optimizer(m)
    for g in opt.param_groups:
        g["lr"] = 1e-3
    losses = []
    for step in range(20):
        m.enqueue(m.keys(others))
        loss, _ = m(views, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.on_after_step(step)
        losses.append(loss.item())
    assert sum(losses[-3:]) < sum(losses[:3]) - 0.5, losses
