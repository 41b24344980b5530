import copy
import math

import pytest
import torch

from selfsup.methods.byol import BYOL, BYOLConfig, byol_loss


def byol_loop(p1, p2, t1, t2) -> float:
    """The paper's L = ||p1/|p1| - t2/|t2|||^2 + ||p2/|p2| - t1/|t1|||^2, each averaged over the batch."""
    def term(p, t):
        total = 0.0
        for b in range(len(p)):
            pn = math.sqrt(sum(float(x) ** 2 for x in p[b]))
            tn = math.sqrt(sum(float(x) ** 2 for x in t[b]))
            total += sum((float(x) / pn - float(y) / tn) ** 2 for x, y in zip(p[b], t[b], strict=True))
        return total / len(p)
    return term(p1.double(), t2.double()) + term(p2.double(), t1.double())


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_loss_matches_the_paper_formula():
    p1, p2, t1, t2 = (randn(5, 6, seed=s) for s in range(4))
    assert byol_loss(p1, p2, t1, t2).item() == pytest.approx(byol_loop(p1, p2, t1, t2), rel=1e-5)


def test_loss_is_symmetric_in_the_views_and_zero_when_predictions_point_at_the_targets():
    p1, p2, t1, t2 = (randn(5, 6, seed=s) for s in range(4))
    a = byol_loss(p1, p2, t1, t2)
    assert byol_loss(p2, p1, t2, t1).item() == pytest.approx(a.item(), rel=1e-6)
    scale = randn(5, 1, seed=9).abs() + 0.1  # any positive length per sample
    assert byol_loss(scale * t2, 3 * t1, t1, t2).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(-t2, -t1, t1, t2).item() == pytest.approx(8.0, rel=1e-6)  # the maximum


def tiny_byol(vit, **kw):
    return BYOL(vit, BYOLConfig(**{"proj_hidden_dim": 32, "proj_output_dim": 16, **kw}))


def test_target_gets_no_gradient_and_is_unchanged_by_backward(tiny_vit):
    m = tiny_byol(tiny_vit)
    before = copy.deepcopy(dict(m.target.named_parameters()))  # BN running statistics do move
    assert not any(p.requires_grad for p in m.target.parameters())
    loss, logs = m([torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)], 0)
    loss.backward()
    assert all(p.grad is None for p in m.target.parameters())
    assert m.backbone.cls_token.grad is not None and m.predictor[0].weight.grad is not None
    assert all(torch.equal(p, before[k]) for k, p in m.target.named_parameters())
    assert 0 < loss.item() < 8 and 0 < logs["emb_std"] < 1
    assert m.eval_backbone() is m.backbone  # the online network is evaluated


def test_target_moves_by_the_ema_exactly_with_the_cosine_momentum(tiny_vit):
    m = tiny_byol(tiny_vit, momentum=0.9)
    m.setup(total_steps=11, steps_per_epoch=5)
    assert m.momentum[0] == pytest.approx(0.9) and m.momentum[-1] == pytest.approx(1.0)
    assert m.schedule_values(5)["momentum"] == pytest.approx(1 - 0.1 * (math.cos(math.pi * 5 / 10) + 1) / 2)
    with torch.no_grad():
        for p in [*m.backbone.parameters(), *m.projector.parameters()]:
            p.add_(torch.randn_like(p))
    old = {k: v.clone() for k, v in m.target.named_parameters()}
    online = {"backbone": m.backbone.state_dict(), "projector": m.projector.state_dict()}
    m.on_after_step(3)
    tau = float(m.momentum[3])
    for k, v in m.target.state_dict().items():
        part, name = k.split(".", 1)
        want = tau * old[k] + (1 - tau) * online[part][name] if k in old else online[part][name]  # buffers: copied
        assert torch.allclose(v, want, atol=1e-6), k
