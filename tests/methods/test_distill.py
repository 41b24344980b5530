"""Distillation: the loss by hand, the teacher's own input, a falling loss with the teacher untouched, resume."""

import pytest
import torch
import torch.nn.functional as F

from selfsup.config import build_config
from selfsup.diagnostics import embedding_std
from selfsup.engine.checkpoint import CheckpointError
from selfsup.engine.pretrain import Trainer, pretrain
from selfsup.methods.distill import Distill, DistillConfig, feature_loss, mixup
from selfsup.models.io import BackboneSpec, file_sha256, save_backbone
from selfsup.models.resnet import resnet18
from selfsup.models.vit import VisionTransformer


@pytest.fixture
def teacher_file(tmp_path):
    """A 2-block ViT teacher on 12-px 1-channel images with its own normalisation (mean 0.2, std 0.5)."""
    torch.manual_seed(3)
    spec = BackboneSpec("vit-cpu", 12, 1, 4, [0.2], [0.5], width=32, depth=2)
    path = tmp_path / "teacher.safetensors"
    save_backbone(spec.build(), spec, path)
    return path


def student_method(teacher_file, student=None, n_global=1, **options) -> Distill:
    torch.manual_seed(0)
    student = student or VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=16, depth=2, num_heads=2)
    method = Distill(student, DistillConfig(teacher=str(teacher_file), **options), n_global)
    method.prepare_data(torch.zeros(2, 1, 16, 16, dtype=torch.uint8), [0.5], [0.25])
    return method


def test_feature_loss_by_hand():
    pred = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    assert feature_loss(pred, target, "mse").item() == pytest.approx((1 + 1 + 0 + 16) / 4)
    assert feature_loss(pred, target, "cosine").item() == pytest.approx(((1 - 0.0) + (1 - 3 / 5)) / 2)


def test_the_teacher_sees_the_same_pixels_at_its_own_size_and_normalisation(teacher_file):
    method = student_method(teacher_file)
    pixels = torch.rand(2, 1, 16, 16)
    got = method.teacher_input((pixels - 0.5) / 0.25)
    want = (F.interpolate(pixels, size=(12, 12), mode="bilinear", antialias=True, align_corners=False) - 0.2) / 0.5
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    rgb = student_method(teacher_file, VisionTransformer(img_size=16, patch_size=4, in_chans=3, embed_dim=16, depth=1,
                                                          num_heads=2))
    rgb.prepare_data(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), [0.5] * 3, [0.25] * 3)
    color = torch.rand(2, 3, 16, 16)
    luma = (0.299 * color[:, 0] + 0.587 * color[:, 1] + 0.114 * color[:, 2]).unsqueeze(1)
    want = (F.interpolate(luma, size=(12, 12), mode="bilinear", antialias=True, align_corners=False) - 0.2) / 0.5
    torch.testing.assert_close(rgb.teacher_input((color - 0.5) / 0.25), want, atol=1e-5, rtol=1e-5)


def test_the_loss_is_the_hand_computed_sum_of_its_two_terms(teacher_file):
    method = student_method(teacher_file, mixup=False, pooled_weight=0.5, patch_weight=2.0)
    x = torch.randn(3, 1, 16, 16)
    loss, logs = method([x], 0)
    teacher, student = method.teacher, method.backbone
    t = teacher.get_intermediate_layers(method.teacher_input(x), 2)  # 2 x (3, 1 + 9, 32): a 3x3 grid at 12 px
    t_cls, t_patch = torch.cat([t[0][:, 0], t[1][:, 0]], -1), torch.cat([t[0][:, 1:], t[1][:, 1:]], -1)  # 64 wide
    s = student.get_intermediate_layers(x, 1)[0]  # (3, 1 + 16, 16): a 4x4 grid at 16 px
    pooled = ((method.pooled_proj(s[:, 0]) - t_cls) ** 2).mean()
    grid = method.patch_proj(s[:, 1:]).transpose(1, 2).reshape(3, 64, 4, 4)
    grid = F.interpolate(grid, size=(3, 3), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    patch = ((grid - t_patch) ** 2).mean()
    assert loss.item() == pytest.approx((0.5 * pooled + 2.0 * patch).item(), rel=1e-5)
    assert {"pooled_cos", "patch_cos", "emb_std"} <= set(logs)
    # the collapse check reads the projected student against its target's own spread, not 1/sqrt(d)
    assert logs["emb_std"] == pytest.approx(embedding_std(method.pooled_proj(s[:, 0])), rel=1e-5)
    assert logs["emb_std_ideal"] == pytest.approx(embedding_std(t_cls), rel=1e-5)


def test_distillation_lowers_its_loss_and_leaves_the_teacher_untouched(teacher_file):
    digest = file_sha256(teacher_file)
    for student in (None, resnet18(in_chans=1, small_stem=True, width=8)):
        method = student_method(teacher_file, student)
        before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
        assert all(not p.requires_grad for p in method.teacher.parameters())
        assert not any(k.startswith("teacher.") for k in method.state_dict())  # a reference only: its digest
        opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=3e-3)
        x, losses = torch.randn(16, 1, 16, 16), []
        method.train()
        for step in range(30):
            loss, _ = method([x], step)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert sum(losses[-3:]) < 0.7 * sum(losses[:3]), losses
        assert not method.teacher.training
        assert all(torch.equal(v, method.teacher.state_dict()[k]) for k, v in before.items())
    assert file_sha256(teacher_file) == digest


def run_cfg(teacher, out, **optim):
    return build_config({"method": "distill", "data": {"name": "digits"},
                         "backbone": {"name": "vit-cpu", "patch_size": 7, "width": 64},
                         "optim": {"epochs": 2 / 44, "batch_size": 32, **optim},
                         "run": {"out": str(out), "eval_knn": False, "log_every": 1}, "distill": {"teacher": teacher}})


def test_resume_finds_the_teacher_again_and_refuses_another(teacher_file, tmp_path):
    straight = pretrain(run_cfg(str(teacher_file), tmp_path / "a"), progress=False)
    cfg = run_cfg(str(teacher_file), tmp_path / "b")
    assert Trainer(cfg, progress=False, stop_at_step=1).fit().interrupted
    second = pretrain(cfg, resume=True, progress=False)
    a = torch.load(straight.out / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(second.out / "checkpoints" / "last.pt", weights_only=True)
    assert not any(k.startswith("teacher.") for k in a["model"])
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert f"teacher_sha256: {file_sha256(teacher_file)}" in (tmp_path / "b" / "config.yaml").read_text()
    other = tmp_path / "other.safetensors"
    spec = BackboneSpec("vit-cpu", 12, 1, 4, [0.2], [0.5], width=32, depth=2)
    save_backbone(spec.build(), spec, other)
    with pytest.raises(CheckpointError, match="distilled from a teacher file with sha256"):
        pretrain(run_cfg(str(other), tmp_path / "b"), resume=True, progress=False)


def test_a_slimmer_student_starts_from_a_selection_of_the_teachers_weights(teacher_file):
    def slim():
        return VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=1)

    assert student_method(teacher_file, slim()).cfg.student_init == "random"  # the default
    method = student_method(teacher_file, slim(), student_init="auto")
    assert method.cfg.student_init == "select"  # auto chose it; recorded in config.yaml
    fc1 = method.teacher.blocks[0].mlp.fc1.weight[::2, ::2]  # teacher width 32 in 1 head -> 16
    assert torch.equal(method.backbone.blocks[0].mlp.fc1.weight, fc1)
    fresh = student_method(teacher_file, slim(), student_init="random")
    assert fresh.cfg.student_init == "random"
    assert not torch.equal(fresh.backbone.blocks[0].mlp.fc1.weight, fc1)
    resnet = resnet18(in_chans=1, small_stem=True, width=8)
    assert student_method(teacher_file, resnet, student_init="auto").cfg.student_init == "random"  # none possible
    with pytest.raises(ValueError, match="no slimmer copy of the teacher .the student is a ResNet"):
        student_method(teacher_file, resnet, student_init="select")


def test_the_contrastive_term_adds_the_students_own_nt_xent_over_its_two_views(teacher_file):
    method = student_method(teacher_file, n_global=2, mixup=False, patch_weight=0.0, contrastive_weight=0.5,
                            temperature=0.3)
    distill_only = student_method(teacher_file, n_global=2, mixup=False, patch_weight=0.0)
    distill_only.load_state_dict(method.state_dict(), strict=False)  # the same student and pooled projection
    a, b = torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16)
    loss, logs = method([a, b], 0)
    base, _ = distill_only([a, b], 0)
    z = F.normalize(method.projector(method.backbone.get_intermediate_layers(torch.cat([a, b]), 1)[0][:, 0]), dim=-1)
    logits = z @ z.T / 0.3  # (6, 6): each view's positive is the other view of its image, itself left out
    logits.fill_diagonal_(float("-inf"))
    nt_xent = F.cross_entropy(logits, torch.tensor([3, 4, 5, 0, 1, 2]))
    assert loss.item() == pytest.approx((base + 0.5 * nt_xent).item(), rel=1e-5)
    assert logs["contrastive"] == pytest.approx(nt_xent.item(), rel=1e-5)
    with pytest.raises(ValueError, match="set --views.n-global 2"):
        student_method(teacher_file, contrastive_weight=0.5)


def test_two_views_mix_with_the_same_partner_and_weight():
    a = torch.arange(4.0).view(4, 1, 1, 1)
    torch.manual_seed(0)
    mixed_a, mixed_b = mixup([a, 10 * a])
    torch.testing.assert_close(mixed_b, 10 * mixed_a)
    assert not torch.equal(mixed_a, a)
