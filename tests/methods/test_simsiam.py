import copy
import math

import pytest
import torch
from torch import nn

from selfsup.methods.simsiam import SimSiam, SimSiamConfig, simsiam_loss


def simsiam_loop(p1, p2, z1, z2) -> float:
    """The paper's L = D(p1, z2)/2 + D(p2, z1)/2 with D(p, z) = -p/|p| . z/|z|, averaged over the batch."""
    def d(p, z):
        total = 0.0
        for b in range(len(p)):
            dot = sum(float(x) * float(y) for x, y in zip(p[b], z[b], strict=True))
            total += -dot / math.sqrt(sum(float(x) ** 2 for x in p[b])) / math.sqrt(sum(float(y) ** 2 for y in z[b]))
        return total / len(p)
    return d(p1.double(), z2.double()) / 2 + d(p2.double(), z1.double()) / 2


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_loss_matches_the_paper_formula():
    p1, p2, z1, z2 = (randn(5, 6, seed=s) for s in range(4))
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(simsiam_loop(p1, p2, z1, z2), rel=1e-5)


def test_loss_is_symmetric_and_minus_one_when_predictions_point_at_the_other_view():
    p1, p2, z1, z2 = (randn(5, 6, seed=s) for s in range(4))
    a = simsiam_loss(p1, p2, z1, z2)
    assert simsiam_loss(p2, p1, z2, z1).item() == pytest.approx(a.item(), rel=1e-6)
    scale = randn(5, 1, seed=9).abs() + 0.1
    assert simsiam_loss(scale * z2, 2 * z1, z1, z2).item() == pytest.approx(-1.0, abs=1e-6)


def test_stop_gradient_on_the_projections():
    p1, p2, z1, z2 = (randn(5, 6, seed=s).requires_grad_() for s in range(4))
    simsiam_loss(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None and p1.grad is not None


def test_heads_follow_the_official_builder(tiny_vit):
    m = SimSiam(tiny_vit, SimSiamConfig(proj_dim=64, pred_hidden_dim=16))
    linears = [mod for mod in m.projector if isinstance(mod, nn.Linear)]
    assert [lin.out_features for lin in linears] == [64, 64, 64]
    assert isinstance(m.projector[-1], nn.BatchNorm1d) and not m.projector[-1].affine
    assert [mod.out_features for mod in m.predictor if isinstance(mod, nn.Linear)] == [16, 64]
    loss, logs = m([torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)], 0)
    loss.backward()
    assert -1 <= loss.item() <= 1 and 0 < logs["emb_std"] < 1
    assert tiny_vit.cls_token.grad is not None


def test_without_stop_gradient_the_projections_get_a_gradient():
    p1, p2, z1, z2 = (randn(5, 6, seed=s).requires_grad_() for s in range(4))
    loss = simsiam_loss(p1, p2, z1, z2, stop_gradient=False)
    loss.backward()
    assert z1.grad is not None and z2.grad is not None
    assert loss.item() == pytest.approx(simsiam_loss(p1, p2, z1, z2).item())  # the same value


def tiny_simsiam(tiny_vit, **kw):
    torch.manual_seed(0)
    return SimSiam(tiny_vit, SimSiamConfig(proj_dim=16, pred_hidden_dim=8, head_bn=False, **kw))


@pytest.mark.parametrize("switch", [{"stop_gradient": False}, {"predictor": False}])
def test_each_switch_changes_only_its_own_option(switch):
    from selfsup.config import build_config

    a = build_config({"method": "simsiam"}).to_dict()
    b = build_config({"method": "simsiam", "simsiam": switch}).to_dict()
    assert {(s, k) for s in a if isinstance(a[s], dict) for k in a[s] if a[s][k] != b[s][k]} == \
        {("simsiam", next(iter(switch)))}


def test_stop_gradient_off_sends_the_target_side_gradient_into_the_encoder(tiny_vit):
    views = [torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    grads = {}
    for sg in (True, False):
        m = tiny_simsiam(copy.deepcopy(tiny_vit), stop_gradient=sg)
        loss, _ = m(views, 0)
        loss.backward()
        grads[sg] = (loss.item(), m.projector[-1].weight.grad.clone(), m.predictor[0].weight.grad.clone())
    assert grads[True][0] == pytest.approx(grads[False][0])  # the same loss value
    assert torch.allclose(grads[True][2], grads[False][2])  # the predictor's gradient is the same
    assert not torch.allclose(grads[True][1], grads[False][1])  # the projector gets the z-side gradient too


def test_predictor_off_predicts_the_projection_itself(tiny_vit):
    m = tiny_simsiam(tiny_vit, predictor=False)
    assert isinstance(m.predictor, nn.Identity) and not list(m.predictor.parameters())
    views = [torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)]
    loss, logs = m(views, 0)
    with torch.no_grad():
        z1, z2 = (m.projector(m.backbone(v)) for v in views)
    assert loss.item() == pytest.approx(simsiam_loss(z1, z2, z1, z2).item(), rel=1e-5)
    assert {"backbone_std", "backbone_rank", "emb_rank"} <= set(logs)
    assert len(m.param_groups()) == 4 and not m.param_groups()[2].params  # the optimiser skips empty groups
