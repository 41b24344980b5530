import math

import pytest
import torch

from selfsup.methods.vicreg import VICReg, VICRegConfig, vicreg_loss


def vicreg_loop(z1, z2, lam, mu, nu) -> tuple[float, float, float, float]:
    """The paper's loss and its parts: s = MSE, v = mean_j relu(1 - sqrt(Var_j + 1e-4)), c = sum of the
    squared off-diagonal covariances / d (unbiased estimates)."""
    z1, z2 = z1.double().tolist(), z2.double().tolist()
    n, d = len(z1), len(z1[0])
    s = sum((z1[b][j] - z2[b][j]) ** 2 for b in range(n) for j in range(d)) / (n * d)

    def var_cov(z):
        mean = [sum(z[b][j] for b in range(n)) / n for j in range(d)]
        cov = [[sum((z[b][i] - mean[i]) * (z[b][j] - mean[j]) for b in range(n)) / (n - 1) for j in range(d)]
               for i in range(d)]
        v = sum(max(0.0, 1 - math.sqrt(cov[j][j] + 1e-4)) for j in range(d)) / d
        c = sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return v, c

    (v1, c1), (v2, c2) = var_cov(z1), var_cov(z2)
    v, c = (v1 + v2) / 2, c1 + c2
    return lam * s + mu * v + nu * c, s, v, c


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)])
def test_loss_matches_the_paper_formula(coeffs):
    z1, z2 = 0.5 * randn(7, 5, seed=0), 0.5 * randn(7, 5, seed=1)  # std < 1: the variance term is active
    loss, parts = vicreg_loss(z1, z2, *coeffs)
    want, s, v, c = vicreg_loop(z1, z2, *coeffs)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert [float(parts[k]) for k in ("invariance", "variance", "covariance")] == pytest.approx([s, v, c], rel=1e-5)
    assert v > 0


def whitened(n: int, d: int, std: float, seed: int = 0) -> torch.Tensor:
    """(n, d) with zero-mean, mutually uncorrelated columns of (unbiased) standard deviation `std`."""
    x = randn(n, d, seed=seed)
    q, _ = torch.linalg.qr(x - x.mean(0))
    return q * math.sqrt(n - 1) * std


def test_terms_vanish_where_the_paper_says():
    z = randn(8, 5)
    assert vicreg_loss(z, z, 25, 25, 1)[1]["invariance"] == 0  # identical views
    wide = whitened(16, 6, std=1.5)
    _, parts = vicreg_loss(wide, whitened(16, 6, std=1.0, seed=1), 25, 25, 1)
    assert parts["variance"] < 1e-6 and parts["covariance"] < 1e-10  # std >= 1, uncorrelated
    collapsed = torch.ones(8, 5)
    assert vicreg_loss(collapsed, collapsed, 25, 25, 1)[1]["variance"] == pytest.approx(1 - 0.01, rel=1e-5)


def test_forward_gives_a_loss_and_gradients(tiny_vit):
    m = VICReg(tiny_vit, VICRegConfig(proj_hidden_dim=32, proj_output_dim=16))
    loss, logs = m([torch.randn(6, 1, 16, 16), torch.randn(6, 1, 16, 16)], 0)
    loss.backward()
    assert loss.item() == pytest.approx(25 * logs["invariance"] + 25 * logs["variance"] + logs["covariance"],
                                        rel=1e-5)
    assert tiny_vit.cls_token.grad is not None and 0 < logs["emb_std"] < 1
