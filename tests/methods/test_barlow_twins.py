import math

import pytest
import torch

from selfsup.methods.barlow_twins import BarlowTwins, BarlowTwinsConfig, barlow_twins_loss


def barlow_loop(z1, z2, lambd) -> float:
    """The paper's sum_i (1 - c_ii)^2 + lambda sum_{i != j} c_ij^2, with c the cross-correlation of the
    embeddings standardised per dimension over the batch as BatchNorm does (biased variance, eps 1e-5)."""
    z1, z2 = z1.double().tolist(), z2.double().tolist()
    n, d = len(z1), len(z1[0])

    def standardise(z):
        cols = []
        for j in range(d):
            col = [z[b][j] for b in range(n)]
            mean = sum(col) / n
            var = sum((x - mean) ** 2 for x in col) / n
            cols.append([(x - mean) / math.sqrt(var + 1e-5) for x in col])
        return cols  # d lists of n

    a, b = standardise(z1), standardise(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[i][k] * b[j][k] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambd * c ** 2
    return loss


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("lambd", [0.0051, 0.5])
def test_loss_matches_the_paper_formula(lambd):
    z1, z2 = randn(7, 5, seed=0), randn(7, 5, seed=1)
    loss, parts = barlow_twins_loss(z1, z2, lambd)
    assert loss.item() == pytest.approx(barlow_loop(z1, z2, lambd), rel=1e-5)
    assert loss.item() == pytest.approx(float(parts["on_diag"] + lambd * parts["off_diag"]), rel=1e-6)


def whitened(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """(n, d) with zero-mean, unit-(biased)-variance, mutually uncorrelated columns."""
    x = randn(n, d, seed=seed)
    q, _ = torch.linalg.qr(x - x.mean(0))  # orthonormal columns, orthogonal to the ones vector
    return q * math.sqrt(n)


def test_loss_vanishes_for_perfectly_correlated_decorrelated_views():
    z = whitened(16, 6)
    loss, parts = barlow_twins_loss(z, z, 0.0051)
    assert loss.item() < 1e-8 and parts["off_diag"] < 1e-8
    # invariant to a per-dimension affine map of either view (the standardisation removes it)
    loss, _ = barlow_twins_loss(z, 3 * z + 1, 0.0051)
    assert loss.item() < 1e-8


def test_redundant_or_uncorrelated_views_are_penalised():
    z = whitened(16, 6)
    redundant = torch.cat([z[:, :3], z[:, :3]], dim=1)
    assert barlow_twins_loss(redundant, redundant, 0.0051)[1]["off_diag"] == pytest.approx(6.0, rel=1e-3)
    assert barlow_twins_loss(z, whitened(16, 6, seed=1), 0.0051)[1]["on_diag"] > 1


def test_forward_gives_a_loss_and_gradients(tiny_vit):
    m = BarlowTwins(tiny_vit, BarlowTwinsConfig(proj_hidden_dim=32, proj_output_dim=16, scale_loss=0.5))
    loss, logs = m([torch.randn(6, 1, 16, 16), torch.randn(6, 1, 16, 16)], 0)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * (logs["on_diag"] + 0.0051 * logs["off_diag"]), rel=1e-5)
    assert tiny_vit.cls_token.grad is not None and 0 < logs["emb_std"] < 1
