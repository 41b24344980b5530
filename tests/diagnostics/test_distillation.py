import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.diagnostics import batch_entropy, entropy_split
from selfsup.methods.dino import DINOLoss

G, V, B, K = 2, 4, 5, 16
PAIRS = ~torch.eye(G, V, dtype=torch.bool)


def probs(*shape, seed=0, scale=3.0):
    return F.softmax(scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_a_uniform_teacher_has_entropy_log_k():
    split = entropy_split(torch.full((G, B, K), 1 / K), probs(V, B, K).log(), PAIRS)
    assert split["teacher_entropy"] == pytest.approx(math.log(K), rel=1e-6)
    assert split["log_K"] == pytest.approx(math.log(K))
    one_hot = F.one_hot(torch.full((G, B), 3), K).float()
    assert entropy_split(one_hot, probs(V, B, K).log(), PAIRS)["teacher_entropy"] == pytest.approx(0, abs=1e-6)


def test_identical_teacher_and_student_have_zero_kl():
    q = probs(1, B, K).expand(G, B, K)
    split = entropy_split(q, q[:1].expand(V, B, K).log(), PAIRS)
    assert split["teacher_student_kl"] == pytest.approx(0, abs=1e-6)
    assert split["cross_entropy"] == pytest.approx(split["teacher_entropy"], rel=1e-6)
    other = entropy_split(q, probs(V, B, K, seed=1).log(), PAIRS)
    assert other["teacher_student_kl"] > 0.1


def test_cross_entropy_is_entropy_plus_kl_and_matches_the_dino_loss():
    q, logp = probs(G, B, K), probs(V, B, K, seed=1).log()
    split = entropy_split(q, logp, PAIRS)
    assert split["cross_entropy"] == pytest.approx(split["teacher_entropy"] + split["teacher_student_kl"], rel=1e-6)
    assert split["cross_entropy"] == pytest.approx(DINOLoss(K).pair_loss(q, logp, PAIRS).item(), rel=1e-6)
    # only the pairs of the loss count: the same pairs taken with a view against itself change h and KL
    everything = entropy_split(q, logp, torch.ones(G, V, dtype=torch.bool))
    assert everything["teacher_student_kl"] != pytest.approx(split["teacher_student_kl"], rel=1e-3)


def test_batch_entropy_tells_one_prototype_from_spread_outputs():
    one = F.one_hot(torch.full((G, B), 3), K).float()
    spread = F.one_hot(torch.arange(8), K).float()
    assert batch_entropy(one) == pytest.approx(0, abs=1e-6)
    assert batch_entropy(spread) == pytest.approx(math.log(8), rel=1e-5)
