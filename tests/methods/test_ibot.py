"""iBOT's patch loss and `--method ibot`, checked against verbatim copies of the official code on random tensors
(official_dinov2_losses.py: dinov2 ibot_patch_loss.py iBOTPatchLoss, bytedance/ibot main_ibot.py iBOTLoss)."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from selfsup.methods.ibot import IBOT, IBOTConfig, masks_weight
from selfsup.methods.ibot import IBOTPatchLoss as PatchLoss
from selfsup.models.vit import VisionTransformer

sys.path.insert(0, str(Path(__file__).parent))
from official_dinov2_losses import iBOTLoss, iBOTPatchLoss  # noqa: E402

TINY = dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, patch_out_dim=48, patch_hidden_dim=32,
            patch_bottleneck_dim=16, freeze_last_layer=0)


def random_masks(batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(B, N) bool with a random count per image, the first image unmasked (as half of DINOv2's are)."""
    masks = torch.rand(batch, n, generator=generator) < torch.rand(batch, 1, generator=generator)
    masks[0] = False
    return masks


@pytest.mark.parametrize("seed", [0, 1])
def test_patch_loss_matches_dinov2_forward_masked_and_its_dense_form(seed):
    """ibot_patch_loss.py forward_masked with collate.py's masks_weight (and forward, on all tokens): the same
    teacher probabilities (softmax_center_teacher with a centre) and the same loss."""
    g = torch.Generator().manual_seed(seed)
    B, N, K, temp = 6, 10, 7, 0.05
    masks = random_masks(B, N, g)
    student, teacher = torch.randn(B, N, K, generator=g, dtype=torch.float64), torch.randn(B, N, K, generator=g)
    ref = iBOTPatchLoss(K)
    ref.center = torch.randn(1, 1, K, generator=g)
    ours = PatchLoss(K)
    ours.center.copy_(ref.center.view(1, K))

    q_ref = ref.softmax_center_teacher(teacher[masks].unsqueeze(0), temp).squeeze(0)  # as ssl_meta_arch.py
    q = ours.teacher_probs(teacher[masks], temp)
    torch.testing.assert_close(q, q_ref)
    weight = (1 / masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(masks)[masks]  # collate.py, verbatim
    torch.testing.assert_close(masks_weight(masks), weight)
    want = ref.forward_masked(student[masks], q_ref.double(), masks, n_masked_patches=int(masks.sum()),
                              masks_weight=weight)
    got = ours(ours.student_log_probs(student[masks]).double(), q.double(), masks)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    dense_q = torch.zeros(B, N, K, dtype=torch.float64)
    dense_q[masks] = q.double()
    assert got.item() == pytest.approx(ref(student, dense_q, masks).item(), rel=1e-6)


def test_patch_sinkhorn_knopp_matches_dinov2():
    """ibot_patch_loss.py sinkhorn_knopp_teacher over the M masked tokens (3 iterations)."""
    g = torch.Generator().manual_seed(2)
    teacher = torch.rand(23, 9, generator=g) * 2 - 1  # the head's logits: cosines, in [-1, 1]
    want = iBOTPatchLoss(9).sinkhorn_knopp_teacher(teacher, 0.07, n_masked_patches_tensor=torch.tensor([23]))
    got = PatchLoss(9, centering="sinkhorn_knopp").teacher_probs(teacher, 0.07)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(got, F.softmax(teacher / 0.07, dim=-1), atol=1e-3)  # not the plain softmax


def test_patch_centre_update_matches_dinov2_on_the_masked_tokens():
    """reduce_center_update + apply_center_update on the masked teacher outputs (1, M, K)."""
    g = torch.Generator().manual_seed(3)
    out = torch.randn(17, 5, generator=g)
    ref, ours = iBOTPatchLoss(5, center_momentum=0.8), PatchLoss(5, center_momentum=0.8)
    for _ in range(2):
        ref.update_center(out.unsqueeze(0))
        ref.apply_center_update()
        ours.update_center(out.sum(0, keepdim=True), torch.tensor(len(out)))
    torch.testing.assert_close(ours.center, ref.center.view(1, 5))


def tiny_ibot(**kw) -> IBOT:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)
    m = IBOT(vit, IBOTConfig(**{**TINY, **kw}))
    m.setup(total_steps=10, steps_per_epoch=5)
    return m


def views_of(batch: int = 4, n_local: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return [torch.randn(batch, 1, 16, 16, generator=g) for _ in range(2)] + \
           [torch.randn(batch, 1, 8, 8, generator=g) for _ in range(n_local)]


def recorded_step(method, views, step=0):
    """One forward of `method`, keeping its masks and every forward_features output of student and teacher."""
    seen = {"student": [], "teacher": []}
    for key, net in (("student", method.backbone), ("teacher", method.teacher["backbone"])):
        def wrapped(x, masks=None, mask_token=None, _orig=net.forward_features, _key=key):
            out = _orig(x, masks, mask_token)
            seen[_key].append(out)
            return out
        net.forward_features = wrapped
    draw = method.draw_mask
    method.draw_mask = lambda x: seen.setdefault("masks", draw(x))
    loss, logs = method(views, step)
    return loss, logs, seen


@pytest.mark.parametrize("separate_head", [False, True])
def test_ibot_method_matches_main_ibot_loss(separate_head):
    """main_ibot.py iBOTLoss on the method's own network outputs: [CLS] cross-entropy over the pairs of different
    views plus the patch loss of each global view on its masked tokens; then both centres (the patch centre over
    all the teacher's patch tokens, `center2`) after the step."""
    m = tiny_ibot(separate_head=separate_head)
    with torch.no_grad():
        m.loss_fn.center.normal_()
        m.patch_loss_fn.center.normal_()
    centres = m.loss_fn.center.clone(), m.patch_loss_fn.center.clone()
    views = views_of()
    loss, logs, seen = recorded_step(m, views)
    masks = seen["masks"]
    assert 0 < masks.sum() and (~masks).all(dim=1).any()  # some images masked, some not

    head, patch_head = m.heads()
    t_head, t_patch_head = m.heads(teacher=True)
    t, s = seen["teacher"][0], seen["student"][0]
    local_cls = torch.cat([o["x_norm_clstoken"] for o in seen["student"][1:]])
    temp = float(m.teacher_temp[0])
    K = m.cfg.patch_out_dim if separate_head else m.cfg.out_dim
    ref = iBOTLoss(m.cfg.out_dim, K, 2, len(views) - 2, temp, temp, temp, temp, 1, 2)
    ref.center, ref.center2 = centres[0].clone(), centres[1].view(1, 1, -1).clone()
    B, N = views[0].shape[0], masks.shape[1]
    h = int(N ** 0.5)
    with torch.no_grad():
        want = ref((head(s["x_norm_clstoken"]), patch_head(s["x_norm_patchtokens"])),
                   (t_head(t["x_norm_clstoken"]), t_patch_head(t["x_norm_patchtokens"])), head(local_cls),
                   list(masks.view(2, B, h, h)), epoch=0)
    assert loss.item() == pytest.approx(want["loss"].item(), rel=1e-5)
    assert logs["dino_loss"] == pytest.approx(want["cls"].item(), rel=1e-5)
    assert logs["ibot_loss"] == pytest.approx(want["patch"].item(), rel=1e-5)
    m.on_after_step(0)
    torch.testing.assert_close(m.loss_fn.center, ref.center)
    torch.testing.assert_close(m.patch_loss_fn.center, ref.center2.view(1, -1))


def test_patch_diagnostics_split_the_patch_loss():
    """h + KL = H over the masked tokens, weighted as the loss: H x masked images / images is the patch loss."""
    m = tiny_ibot()
    _, logs, seen = recorded_step(m, views_of(8))
    masks = seen["masks"]
    masked_images = int(masks.any(dim=1).sum())
    assert logs["patch_teacher_entropy"] + logs["patch_teacher_student_kl"] == pytest.approx(
        logs["patch_cross_entropy"], rel=1e-5)
    assert logs["patch_cross_entropy"] * masked_images / len(masks) == pytest.approx(logs["ibot_loss"], rel=1e-5)
    assert 0 < logs["patch_teacher_entropy"] <= logs["log_K"] and logs["patch_teacher_student_kl"] > 0
    assert logs["masked"] == pytest.approx(masks.float().mean().item())


def test_separate_head_has_its_own_teacher_and_both_last_layers_are_frozen_at_first():
    m = tiny_ibot(separate_head=True, freeze_last_layer=1)
    assert m.patch_head is not None and m.patch_head is not m.head
    assert m.teacher["patch_head"].last_layer.parametrizations.weight.original1.shape == (48, 16)
    loss, _ = m(views_of(), 0)
    loss.backward()
    m.on_after_backward(0)
    assert all(p.grad is None for p in m.patch_head.last_layer.parameters())
    assert all(p.grad is None for p in m.head.last_layer.parameters())
    assert m.patch_head.mlp[0].weight.grad is not None and m.mask_token.grad is not None
    before = m.teacher["patch_head"].mlp[0].weight.clone()
    with torch.no_grad():
        m.patch_head.mlp[0].weight.add_(1.0)
    m.on_after_step(0)
    assert not torch.equal(m.teacher["patch_head"].mlp[0].weight, before)  # the EMA follows the student's head


def test_unmasked_views_give_no_patch_loss_and_leave_the_mask_token_untrained():
    m = tiny_ibot(mask_sample_probability=0.0)
    loss, logs = m(views_of(), 0)
    assert logs["ibot_loss"] == 0 and logs["masked"] == 0 and "patch_cross_entropy" not in logs
    loss.backward()
    assert m.mask_token.grad is None or not m.mask_token.grad.any()


def test_the_student_sees_the_mask_token_where_masked_and_the_teacher_the_whole_crops():
    """iBOT's input (prepare_tokens_with_masks): the student's masked patch embeddings are the method's mask token;
    the teacher reads the unmasked global crops."""
    m = tiny_ibot()
    with torch.no_grad():
        m.mask_token.normal_()
    views = views_of()
    _, _, seen = recorded_step(m, views)
    glob, masks, s = torch.cat(views[:2]), seen["masks"], seen["student"][0]
    assert s["masks"] is masks and masks.any() and seen["teacher"][0]["masks"] is None
    with torch.no_grad():
        again = m.backbone.forward_features(glob, masks, m.mask_token)["x_norm_patchtokens"]
        plain = m.backbone.forward_features(glob)["x_norm_patchtokens"]
    torch.testing.assert_close(s["x_norm_patchtokens"], again)
    assert not torch.allclose(s["x_norm_patchtokens"][masks], plain[masks], atol=1e-3)
