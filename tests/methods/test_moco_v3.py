import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.engine.optim import build_optimizer
from selfsup.methods.moco_v3 import MoCoV3, MoCoV3Config, ctr
from selfsup.models.resnet import ResNet

TINY = {"proj_hidden_dim": 16, "pred_hidden_dim": 16, "out_dim": 8}


def ctr_loop(q, k, t):
    """2t * mean_i -log exp(q_i.k_i/t) / sum_j exp(q_i.k_j/t), q and k L2-normalised."""
    q, k = F.normalize(q.double(), dim=-1), F.normalize(k.double(), dim=-1)
    total = 0.0
    for i in range(len(q)):
        denom = sum(math.exp(float(q[i] @ k[j]) / t) for j in range(len(k)))
        total += -math.log(math.exp(float(q[i] @ k[i]) / t) / denom)
    return 2 * t * total / len(q)


@pytest.mark.parametrize("t", [0.2, 1.0])
def test_ctr_matches_the_paper_formula(t):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    assert ctr(q, k, t).item() == pytest.approx(ctr_loop(q, k, t), rel=1e-5)


def method(backbone, **cfg) -> MoCoV3:
    torch.manual_seed(0)
    m = MoCoV3(backbone, MoCoV3Config(**{**TINY, **cfg}))
    m.setup(total_steps=10, steps_per_epoch=5)
    return m


@pytest.mark.parametrize("head_bn", [True, False])
def test_loss_is_symmetric_in_the_two_views_and_matches_its_parts(tiny_vit, head_bn):
    m = method(tiny_vit, head_bn=head_bn)
    views = [torch.randn(6, 1, 16, 16) for _ in range(2)]
    loss, logs = m(views, 0)
    assert m(views[::-1], 0)[0].item() == pytest.approx(loss.item(), rel=1e-5)
    with torch.no_grad():
        q1, q2 = (m.predictor(m.projector(m.backbone(v))) for v in views)
        k1, k2 = (m.momentum_encoder["projector"](m.momentum_encoder["backbone"](v)) for v in views)
    expected = ctr_loop(q1, k2, 0.2) + ctr_loop(q2, k1, 0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert 0 < logs["emb_std"] < 1
    loss.backward()
    assert all(p.grad is None for p in m.momentum_encoder.parameters())


def test_heads_follow_the_official_layout(tiny_vit):
    m = method(tiny_vit)
    kinds = [type(x).__name__ for x in m.projector]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear", "BatchNorm1d"]
    assert not m.projector[-1].affine and not m.predictor[-1].affine
    assert [type(x).__name__ for x in method(tiny_vit, pred_last_bn=False).predictor][-1] == "Linear"


def test_momentum_rises_from_its_base_to_one_and_drives_the_ema(tiny_vit):
    m = method(tiny_vit, momentum=0.99)
    values = [m.schedule_values(s)["momentum"] for s in range(10)]
    assert values[0] == pytest.approx(0.99) and values[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(values[:-1], values[1:], strict=True))
    key = m.momentum_encoder["projector"][0].weight
    old = key.clone()
    with torch.no_grad():
        m.projector[0].weight.add_(1.0)
    m.on_after_step(0)
    assert torch.allclose(key, 0.99 * old + 0.01 * m.projector[0].weight, atol=1e-6)


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_patch_embedding_stays_unchanged_after_a_step(tiny_vit, freeze):
    m = method(tiny_vit, freeze_patch_embed=freeze)
    before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    opt = build_optimizer(m)
    for g in opt.param_groups:
        g["lr"] = 1e-2
    loss, _ = m([torch.randn(4, 1, 16, 16) for _ in range(2)], 0)
    loss.backward()
    opt.step()
    m.on_after_step(0)
    after = m.backbone.state_dict()
    assert torch.equal(before["patch_embed.proj.weight"], after["patch_embed.proj.weight"]) == freeze
    assert not torch.equal(before["blocks.0.attn.qkv.weight"], after["blocks.0.attn.qkv.weight"])
    if freeze:  # the momentum copy of a frozen layer stays the same random projection
        assert torch.allclose(m.momentum_encoder["backbone"].patch_embed.proj.weight,
                              after["patch_embed.proj.weight"])


def test_freezing_the_patch_embedding_does_not_touch_a_resnet():
    m = method(ResNet(depth=18, in_chans=1, small_stem=True))
    assert all(p.requires_grad for p in m.backbone.parameters())
