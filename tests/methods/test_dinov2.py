"""`--method dinov2` against DINOv2's own loss code on random tensors (official_dinov2_losses.py: verbatim copies of
dinov2/loss/{dino_clstoken_loss,ibot_patch_loss,koleo_loss}.py) combined as dinov2/train/ssl_meta_arch.py
forward_backward does; an exact resume (its recipe: test_recipes.py)."""

import sys
from pathlib import Path

import pytest
import torch

from selfsup.config import build_config
from selfsup.engine.pretrain import Trainer, pretrain
from selfsup.methods.dino import DINOLoss as OurDINOLoss
from selfsup.methods.dinov2 import DINOv2, DINOv2Config
from selfsup.methods.koleo import koleo_loss
from selfsup.models.vit import VisionTransformer
from selfsup.models.vit_layers import LayerScale

sys.path.insert(0, str(Path(__file__).parent))
from official_dinov2_losses import DINOLoss, KoLeoLoss, iBOTPatchLoss  # noqa: E402
from test_ibot import TINY, recorded_step, views_of  # noqa: E402

# koleo_loss.py's torch.cuda.amp.autocast(enabled=False), verbatim, is deprecated in this torch
pytestmark = pytest.mark.filterwarnings("ignore:`torch.cuda.amp.autocast:FutureWarning")


def tiny_dinov2(**kw) -> DINOv2:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                            init_values=0.1)
    m = DINOv2(vit, DINOv2Config(**{**TINY, **kw}))
    m.setup(total_steps=10, steps_per_epoch=5)
    return m


def ssl_meta_arch_loss(dino_loss, ibot_loss, koleo, koleo_weight, s_cls_tokens, s_global, s_local, s_patch,
                       t_cls, t_patch, masks, temp, n_local, centering):
    """dinov2/train/ssl_meta_arch.py forward_backward's loss (lines 'teacher output' to 'accumulate loss'), from
    the head outputs: student [CLS] logits of the global crops (2B, K) and local crops (L*B, K), student and teacher
    logits of the masked patch tokens (M, K'), teacher [CLS] logits (2B, K), the (2B, N) masks and the student's
    [CLS] embeddings of the global crops (2B, D). n_global_crops = 2, upperbound = M (no padding)."""
    n_global_crops, n_masked = 2, len(t_patch)
    chunks = t_cls.chunk(n_global_crops)
    t_cls = torch.cat((chunks[1], chunks[0]))  # "chunked and cat'd in reverse so A is matched to B"
    if centering == "centering":
        t_dino = dino_loss.softmax_center_teacher(t_cls, teacher_temp=temp).view(n_global_crops, -1, t_cls.shape[1])
        dino_loss.update_center(t_cls)
        t_patch = t_patch.unsqueeze(0)
        t_ibot = ibot_loss.softmax_center_teacher(t_patch[:, :n_masked], teacher_temp=temp).squeeze(0)
        ibot_loss.update_center(t_patch[:n_masked])
    else:
        t_dino = dino_loss.sinkhorn_knopp_teacher(t_cls, teacher_temp=temp).view(n_global_crops, -1, t_cls.shape[1])
        t_ibot = ibot_loss.sinkhorn_knopp_teacher(t_patch, teacher_temp=temp,
                                                  n_masked_patches_tensor=torch.tensor([n_masked]))
    n_local_terms, n_global_terms = max(n_local * n_global_crops, 1), (n_global_crops - 1) * n_global_crops
    loss = 0
    if n_local > 0:
        loss += dino_loss(s_local.chunk(n_local), t_dino) / (n_global_terms + n_local_terms)
    loss += dino_loss([s_global], [t_dino.flatten(0, 1)]) * 2 / (n_global_terms + n_local_terms)
    loss += koleo_weight * sum(koleo(p) for p in s_cls_tokens.chunk(2))
    weight = (1 / masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(masks)[masks]  # collate.py
    loss += ibot_loss.forward_masked(s_patch, t_ibot, student_masks_flat=masks, n_masked_patches=n_masked,
                                     masks_weight=weight) * 2 * (1.0 / n_global_crops)
    return loss


@pytest.mark.parametrize("centering", ["centering", "sinkhorn_knopp"])
@pytest.mark.parametrize("separate_head,n_local", [(False, 2), (True, 2), (False, 1)])
def test_dinov2_loss_matches_ssl_meta_arch(centering, separate_head, n_local):
    """With local crops (DINOv2 always has some: without, its max(n_local * 2, 1) counts a local term that is not
    there and scales the [CLS] loss by 2/3; here it stays the mean over the pairs, as DINO's and iBOT's)."""
    m = tiny_dinov2(centering=centering, separate_head=separate_head)
    with torch.no_grad():
        m.loss_fn.center.normal_()
        m.patch_loss_fn.center.normal_()
    K, K2 = m.cfg.out_dim, m.cfg.patch_out_dim if separate_head else m.cfg.out_dim
    ref_dino, ref_ibot = DINOLoss(K), iBOTPatchLoss(K2)
    ref_dino.center, ref_ibot.center = m.loss_fn.center.clone(), m.patch_loss_fn.center.view(1, 1, -1).clone()
    views = views_of(6, n_local)
    loss, logs, seen = recorded_step(m, views)
    masks = seen["masks"]
    assert masks.any(dim=1).sum() == int(len(masks) * 0.5)  # mask_sample_probability 0.5 of the 2B crops
    head, patch_head = m.heads()
    t_head, t_patch_head = m.heads(teacher=True)
    t, s = seen["teacher"][0], seen["student"][0]
    with torch.no_grad():
        local = [o["x_norm_clstoken"] for o in seen["student"][1:]]
        want = ssl_meta_arch_loss(
            ref_dino, ref_ibot, KoLeoLoss(), 0.1, s["x_norm_clstoken"], head(s["x_norm_clstoken"]),
            head(torch.cat(local)) if local else None, patch_head(s["x_norm_patchtokens"][masks]),
            t_head(t["x_norm_clstoken"]), t_patch_head(t["x_norm_patchtokens"][masks]), masks,
            float(m.teacher_temp[0]), n_local, centering)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    m.on_after_step(0)
    if centering == "centering":  # DINOv2 applies the update at its next teacher softmax; here after the step
        ref_dino.apply_center_update()
        ref_ibot.apply_center_update()
        torch.testing.assert_close(m.loss_fn.center, ref_dino.center)
        torch.testing.assert_close(m.patch_loss_fn.center, ref_ibot.center.view(1, -1))
    else:  # Sinkhorn-Knopp keeps no centre
        assert torch.equal(m.loss_fn.center, ref_dino.center) and torch.equal(m.patch_loss_fn.center,
                                                                               ref_ibot.center.view(1, -1))
    assert logs["koleo_loss"] == pytest.approx(sum(KoLeoLoss()(p).item() for p in s["x_norm_clstoken"].chunk(2)),
                                               rel=1e-5)


@pytest.mark.parametrize("n,d", [(8, 5), (33, 16)])
def test_koleo_matches_dinov2_value_and_gradient(n, d):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, d, generator=g, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    want = KoLeoLoss()(x)
    got = koleo_loss(y)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    want.backward()
    got.backward()
    torch.testing.assert_close(y.grad, x.grad)


def test_koleo_spreads_near_duplicates():
    """Two nearly equal embeddings dominate the loss: pushing them apart lowers it."""
    x = torch.tensor([[1.0, 0.0], [1.0, 1e-3], [0.0, 1.0], [-1.0, 0.0]])
    spread = x.clone()
    spread[1] = torch.tensor([0.7, 0.7])
    assert koleo_loss(spread) < koleo_loss(x)


def test_cls_sinkhorn_knopp_matches_dinov2():
    """dino_clstoken_loss.py sinkhorn_knopp_teacher (3 iterations) is DINO's --dino.centering sinkhorn_knopp."""
    g = torch.Generator().manual_seed(4)
    t = torch.rand(12, 10, generator=g) * 2 - 1
    ours = OurDINOLoss(10, centering="sinkhorn_knopp")
    q, _, _ = ours.distributions(torch.randn(24, 10), t, n_views=2, teacher_temp=0.05)
    torch.testing.assert_close(q.flatten(0, 1), DINOLoss(10).sinkhorn_knopp_teacher(t, 0.05), rtol=1e-5, atol=1e-7)


def run_cfg(out: Path, **sections):
    raw = {"method": "dinov2", "data": {"name": "digits"}, "backbone": {"name": "vit-cpu", "patch_size": 7},
           "views": {"global_size": 28, "local_size": 14, "n_local": 1},
           "optim": {"epochs": 4 / 22, "batch_size": 64, "warmup_epochs": 0.05},
           "run": {"out": str(out), "eval_knn": False, "log_every": 1, "checkpoint_every": 100},
           "dinov2": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "separate_head": True,
                      "patch_out_dim": 32, "patch_hidden_dim": 32, "patch_bottleneck_dim": 16}}
    return build_config({**raw, **sections})


def test_the_engine_builds_a_layerscale_vit_and_resumes_exactly(tmp_path):
    """The recipe's LayerScale reaches the trained ViT; a run stopped after 2 of 4 steps and resumed ends with the
    same weights, centres, teacher and mask token as one run straight through (the masks come from the
    checkpointed RNG)."""
    straight = pretrain(run_cfg(tmp_path / "a"), progress=False)
    cfg = run_cfg(tmp_path / "b")
    trainer = Trainer(cfg, progress=False, stop_at_step=2)
    first = trainer.fit()
    assert isinstance(trainer.method.backbone.blocks[0].ls1, LayerScale)
    assert first.interrupted and first.steps == 2
    second = pretrain(cfg, resume=True, progress=False)
    assert second.steps == straight.steps == 4
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert {"mask_token", "patch_loss_fn.center", "teacher.patch_head.mlp.0.weight"} <= set(a)
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def test_registers_are_neither_masked_nor_read_by_the_losses():
    """With register tokens ([CLS], registers, patches) the masks, the patch loss and KoLeo see the same patch and
    [CLS] tokens: the loss is that of the network's own token kinds, and the registers get a gradient through
    attention only."""
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                            init_values=0.1, num_register_tokens=2)
    m = DINOv2(vit, DINOv2Config(**TINY))
    m.setup(total_steps=10, steps_per_epoch=5)
    loss, logs, seen = recorded_step(m, views_of())
    s = seen["student"][0]
    assert s["x_norm_regtokens"].shape[1] == 2 and s["x_norm_patchtokens"].shape[1] == seen["masks"].shape[1] == 16
    loss.backward()
    assert torch.isfinite(loss) and m.backbone.register_tokens.grad.abs().sum() > 0
