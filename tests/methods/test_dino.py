import copy
import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.methods.base import forward_concat_by_size
from selfsup.methods.dino import DINO, DinoConfig, DINOLoss
from selfsup.methods.momentum import ema_update
from selfsup.models.vit import VisionTransformer


def paper_dino_loss(student, teacher, center, n_views, n_global, tau_s, tau_t):
    """Direct loop over the paper's formula: sum over x in globals, x' != x of H(P_t(x), P_s(x'))."""
    B = student.shape[0] // n_views
    total, terms = 0.0, 0
    for i in range(n_global):
        t = teacher[i * B:(i + 1) * B]
        for v in range(n_views):
            if v == i:
                continue
            s = student[v * B:(v + 1) * B]
            for b in range(B):
                p_t = [math.exp((t[b, k] - center[0, k]) / tau_t) for k in range(t.shape[1])]
                z_t = sum(p_t)
                p_s = [math.exp(s[b, k] / tau_s) for k in range(s.shape[1])]
                z_s = sum(p_s)
                total += -sum(p_t[k] / z_t * math.log(p_s[k] / z_s) for k in range(s.shape[1])) / B
            terms += 1
    return total / terms


@pytest.mark.parametrize("n_views,n_global", [(2, 2), (5, 2), (3, 1)])
def test_loss_matches_paper_formula(n_views, n_global):
    torch.manual_seed(0)
    B, K = 3, 7
    student = torch.randn(n_views * B, K, dtype=torch.float64)
    teacher = torch.randn(n_global * B, K, dtype=torch.float64)
    loss_fn = DINOLoss(K, student_temp=0.1)
    loss_fn.center = torch.randn(1, K) * 0.1
    got = loss_fn(student, teacher, n_views, teacher_temp=0.04)
    want = paper_dino_loss(student, teacher, loss_fn.center.double(), n_views, n_global,
                           0.1, 0.04)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_center_update_is_ema_of_batch_mean():
    loss_fn = DINOLoss(4, center_momentum=0.9)
    t = torch.tensor([[1.0, 2, 3, 4], [3.0, 2, 1, 0]])
    loss_fn.update_center(t)
    assert torch.allclose(loss_fn.center, 0.1 * torch.tensor([[2.0, 2, 2, 2]]))
    loss_fn.update_center(t)
    assert torch.allclose(loss_fn.center, (0.9 * 0.2 + 0.1 * 2) * torch.ones(1, 4))


def test_ema_update_averages_parameters_and_leaves_the_targets_buffers_to_its_own_forwards():
    """main_dino.py, moco builder.py, moco-v3 builder.py: the EMA zips `.parameters()` only."""
    torch.manual_seed(0)
    online = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    target = copy.deepcopy(online)
    online(torch.randn(16, 3) * 5 + 2)  # the online BatchNorm's running statistics move
    with torch.no_grad():
        online[0].weight.add_(1.0)
    before = copy.deepcopy(target.state_dict())
    ema_update(target, online, 0.75)
    online_params = dict(online.named_parameters())
    for name, p in target.named_parameters():
        assert torch.allclose(p, 0.75 * before[name] + 0.25 * online_params[name].detach()), name
    for name, b in target.named_buffers():
        assert torch.equal(b, before[name]), name  # not the online running statistics
    x = torch.randn(16, 3)
    target(x)  # its own forward in training mode updates its own statistics
    h = target[0](x).detach()
    assert torch.allclose(target[1].running_mean, 0.9 * before["1.running_mean"] + 0.1 * h.mean(0), atol=1e-6)


def test_teacher_batch_norm_statistics_come_from_its_own_forwards():
    m = tiny_dino(use_bn_in_head=True)
    m.setup(total_steps=4, steps_per_epoch=2)
    views = [torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16), torch.randn(4, 1, 8, 8)]
    student_bn, teacher_bn = m.head.mlp[1], m.teacher["head"].mlp[1]
    with torch.no_grad():
        h = m.teacher["head"].mlp[0](m.teacher["backbone"](torch.cat(views[:2])))  # the teacher BN's input
    loss, _ = m(views, 0)
    loss.backward()
    m.on_after_step(0)
    assert torch.allclose(teacher_bn.running_mean, 0.1 * h.mean(0), atol=1e-6)
    assert not torch.allclose(teacher_bn.running_mean, student_bn.running_mean)
    assert teacher_bn.num_batches_tracked == 1


def tiny_dino(**kw):
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)
    return DINO(vit, DinoConfig(out_dim=64, hidden_dim=32, bottleneck_dim=16, **kw))


def test_teacher_starts_as_exact_copy_and_does_not_learn():
    m = tiny_dino()
    for (n, p), (_, q) in zip(m.backbone.state_dict().items(), m.teacher["backbone"].state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    for (n, p), (_, q) in zip(m.head.state_dict().items(), m.teacher["head"].state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    assert not any(p.requires_grad for p in m.teacher.parameters())


def test_schedules_and_freeze_last_layer():
    m = tiny_dino(momentum_teacher=0.9, warmup_teacher_temp=0.02, teacher_temp=0.06,
                  warmup_teacher_temp_epochs=2, freeze_last_layer=1)
    m.setup(total_steps=50, steps_per_epoch=10)
    assert m.momentum[0] == pytest.approx(0.9) and m.momentum[-1] == pytest.approx(1.0)
    assert m.teacher_temp[0] == pytest.approx(0.02) and m.teacher_temp[19] == pytest.approx(0.06)
    assert m.teacher_temp[-1] == pytest.approx(0.06)
    views = [torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16), torch.randn(4, 1, 8, 8)]
    loss, _ = m(views, 0)
    loss.backward()
    m.on_after_backward(0)
    assert all(p.grad is None for p in m.head.last_layer.parameters())
    assert m.backbone.cls_token.grad is not None
    m.zero_grad()
    loss, _ = m(views, 10)
    loss.backward()
    m.on_after_backward(10)
    assert m.head.last_layer.parametrizations.weight.original1.grad is not None


def test_multicrop_forward_groups_by_resolution():
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2).eval()
    views = [torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16), torch.randn(2, 1, 8, 8)]
    got = forward_concat_by_size(vit, views)
    want = torch.cat([vit(v) for v in views])
    assert torch.allclose(got, want, atol=1e-5)


def test_loss_is_low_when_student_matches_sharp_teacher():
    K = 8
    loss_fn = DINOLoss(K, student_temp=1.0)
    t = F.one_hot(torch.tensor([1, 3]), K).float() * 10
    matched = loss_fn(torch.cat([t, t]), t, n_views=2, teacher_temp=1.0)
    wrong = loss_fn(torch.cat([t.flip(0), t.flip(0)]), t, n_views=2, teacher_temp=1.0)
    assert matched < wrong


def test_dino_logs_the_split_of_its_cross_entropy():
    m = tiny_dino()
    m.setup(total_steps=2, steps_per_epoch=1)
    views = [torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16), torch.randn(4, 1, 8, 8)]
    loss, logs = m(views, 0)
    assert logs["cross_entropy"] == pytest.approx(loss.item(), rel=1e-5)  # H is the loss (ce)
    assert logs["cross_entropy"] == pytest.approx(logs["teacher_entropy"] + logs["teacher_student_kl"], rel=1e-5)
    assert logs["log_K"] == pytest.approx(math.log(64))
    assert 0 <= logs["teacher_batch_entropy"] <= logs["log_K"] + 1e-6
