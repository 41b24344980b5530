import math

import pytest
import torch

from selfsup.diagnostics import collapse_logs, effective_rank, embedding_std, ideal_std


def test_std_is_zero_when_collapsed_and_near_ideal_when_isotropic():
    torch.manual_seed(0)
    assert embedding_std(torch.ones(64, 16) * torch.randn(1, 16)) == pytest.approx(0, abs=1e-6)
    assert embedding_std(torch.randn(4096, 16)) == pytest.approx(ideal_std(16), rel=0.05)
    assert collapse_logs(torch.randn(8, 25))["emb_std_ideal"] == pytest.approx(0.2)


def test_effective_rank_counts_the_used_dimensions():
    torch.manual_seed(0)
    line = torch.randn(64, 1) * torch.randn(1, 16)  # rank 1
    assert effective_rank(line) == pytest.approx(1, abs=1e-3)
    plane = torch.cat([torch.randn(64, 4), torch.zeros(64, 12)], dim=1)  # 4 spread dimensions
    assert 3 < effective_rank(plane) <= 4 + 1e-3
    assert effective_rank(torch.eye(16)) == pytest.approx(16, rel=1e-4)
    assert effective_rank(torch.randn(256, 16)) > 0.8 * 16 and math.isfinite(effective_rank(torch.zeros(4, 4)))


def test_collapse_logs_add_the_rank_and_the_backbone_measures_when_given():
    torch.manual_seed(0)
    z, h = torch.randn(64, 8), torch.randn(64, 1) * torch.randn(1, 32)  # a spread projection, a collapsed backbone
    logs = collapse_logs(z, backbone=h)
    assert logs["emb_rank"] == pytest.approx(effective_rank(z)) and logs["emb_rank"] > 6
    assert logs["backbone_rank"] == pytest.approx(1, abs=1e-3)
    assert logs["backbone_std"] == pytest.approx(embedding_std(h)) and logs["backbone_std_ideal"] == ideal_std(32)
    assert not any(k.startswith("backbone") for k in collapse_logs(z))
