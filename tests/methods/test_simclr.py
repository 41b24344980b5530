import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.methods.simclr import SimCLR, SimCLRConfig, nt_xent


def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """The paper's l(i, j) = -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t), averaged over all 2N anchors."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1).double()
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / denom)
    return total / (2 * n)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_nt_xent_matches_the_paper_formula(t):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert nt_xent(torch.cat([z1, z2]), t).item() == pytest.approx(nt_xent_loop(z1, z2, t), rel=1e-5)


def multi_positive_loop(views: list[torch.Tensor], t: float) -> float:
    """solo-learn's multi-view NT-Xent: l_i = -log sum_{p in P(i)} exp(s_ip/t) / sum_{k != i} exp(s_ik/t),
    P(i) the other views of i's image, averaged over all V*N anchors."""
    z = F.normalize(torch.cat(views), dim=-1).double()
    n, total = len(views[0]), 0.0
    for i in range(len(z)):
        e = [math.exp(float(z[i] @ z[k]) / t) for k in range(len(z))]
        pos = sum(e[k] for k in range(len(z)) if k != i and k % n == i % n)
        total += -math.log(pos / (sum(e) - e[i]))
    return total / len(z)


@pytest.mark.parametrize("n_views", [3, 6])
def test_multi_view_nt_xent_matches_the_multi_positive_formula(n_views):
    g = torch.Generator().manual_seed(2)
    views = [torch.randn(4, 8, generator=g) for _ in range(n_views)]
    loss = nt_xent(torch.cat(views), 0.2, n_views)
    assert loss.item() == pytest.approx(multi_positive_loop(views, 0.2), rel=1e-5)
    assert multi_positive_loop(views[:2], 0.2) == pytest.approx(nt_xent_loop(*views[:2], 0.2), rel=1e-9)


def dcl_loop(views: list[torch.Tensor], t: float) -> float:
    """DCL (Yeh et al., 2022, eq. 3) with every other view of the image a positive:
    l_i = -log sum_{p in P(i)} exp(s_ip/t) + log sum_{k != i, k not in P(i)} exp(s_ik/t)."""
    z = F.normalize(torch.cat(views), dim=-1).double()
    n, total = len(views[0]), 0.0
    for i in range(len(z)):
        e = [math.exp(float(z[i] @ z[k]) / t) for k in range(len(z))]
        pos = sum(e[k] for k in range(len(z)) if k != i and k % n == i % n)
        neg = sum(e[k] for k in range(len(z)) if k % n != i % n)
        total += -math.log(pos) + math.log(neg)
    return total / len(z)


@pytest.mark.parametrize("n_views", [2, 3])
def test_decoupled_nt_xent_matches_the_dcl_formula(n_views):
    g = torch.Generator().manual_seed(3)
    views = [torch.randn(5, 8, generator=g) for _ in range(n_views)]
    loss = nt_xent(torch.cat(views), 0.2, n_views, decoupled=True)
    assert loss.item() == pytest.approx(dcl_loop(views, 0.2), rel=1e-5)
    # leaving the positive out of the denominator lowers the loss by -log(1 - p_pos) > 0 per anchor
    assert loss.item() < nt_xent(torch.cat(views), 0.2, n_views).item()


def test_simclr_with_local_crops_takes_every_view(tiny_vit):
    method = SimCLR(tiny_vit, SimCLRConfig(proj_hidden_dim=32, proj_output_dim=16))
    views = [torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)] + [torch.randn(4, 1, 8, 8)] * 3
    loss, _ = method(views, step=0)
    loss.backward()
    assert torch.isfinite(loss) and tiny_vit.patch_embed.proj.weight.grad.abs().sum() > 0


def test_nt_xent_is_symmetric_in_the_views_and_invariant_to_scale():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    a = nt_xent(torch.cat([z1, z2]), 0.2)
    assert nt_xent(torch.cat([z2, z1]), 0.2).item() == pytest.approx(a.item(), rel=1e-6)
    assert nt_xent(torch.cat([3 * z1, 0.5 * z2]), 0.2).item() == pytest.approx(a.item(), rel=1e-5)


def test_nt_xent_is_low_for_matching_views_and_high_for_swapped_pairs():
    z = torch.eye(4) * 5
    matched = nt_xent(torch.cat([z, z]), 0.1)
    swapped = nt_xent(torch.cat([z, z.roll(1, 0)]), 0.1)
    assert matched < 0.01 < swapped


def test_simclr_forward_gives_a_loss_and_gradients(tiny_vit):
    method = SimCLR(tiny_vit, SimCLRConfig(proj_hidden_dim=32, proj_output_dim=16))
    views = [torch.randn(4, 1, 16, 16) for _ in range(2)]
    loss, logs = method(views, 0)
    loss.backward()
    assert loss.item() > 0 and 0 < logs["emb_std"] < 1
    assert tiny_vit.cls_token.grad is not None
