"""The optimiser over a method's parameter groups: LARS's update, per-group lr and weight decay."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.config import ConfigError, build_config
from selfsup.engine import pretrain
from selfsup.engine.lars import LARS
from selfsup.engine.optim import (
    apply_schedules,
    build_optimizer,
    clip_gradients,
    optim_schedules,
    optimizer_for,
    warmup_steps,
)
from selfsup.methods import METHODS
from selfsup.models.resnet import resnet18

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import build as ddp_build  # noqa: E402


def lars_reference(w, g, mu, lr, wd, momentum, eta, adapt):
    """barlowtwins main.py LARS.step (lines 236-262) for one parameter."""
    d = g + wd * w if adapt else g
    if adapt:
        wn, dn = w.norm(), d.norm()
        d = d * (eta * wn / dn if wn > 0 and dn > 0 else 1.0)
    mu = momentum * mu + d
    return w - lr * mu, mu


def test_lars_update_follows_the_formula_with_eta_0_001():
    torch.manual_seed(0)
    w, b = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(4))
    opt = LARS([{"params": [w]}, {"params": [b], "lars_exclude": True}], lr=0.5, weight_decay=0.01, momentum=0.9)
    assert opt.defaults["eta"] == 0.001
    w_ref, b_ref = w.detach().clone(), b.detach().clone()
    mu_w, mu_b = torch.zeros_like(w), torch.zeros_like(b)
    for _ in range(2):
        gw, gb = torch.randn(4, 3), torch.randn(4)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        w_ref, mu_w = lars_reference(w_ref, gw, mu_w, 0.5, 0.01, 0.9, 0.001, adapt=True)
        b_ref, mu_b = lars_reference(b_ref, gb, mu_b, 0.5, 0.01, 0.9, 0.001, adapt=False)
        assert torch.allclose(w, w_ref, atol=1e-6) and torch.allclose(b, b_ref, atol=1e-6)


def test_lars_adapts_each_parameter_of_a_group_by_its_own_norms():
    """The multi-tensor step: three parameters of one group (one without a gradient, which stays as it is), each
    scaled by its own trust ratio."""
    torch.manual_seed(0)
    ps = [nn.Parameter(torch.randn(*shape) * scale) for shape, scale in (((5, 3), 1.0), ((7,), 30.0), ((2, 2), 0.1))]
    idle = nn.Parameter(torch.randn(3))
    opt = LARS([{"params": [ps[0], idle, *ps[1:]]}], lr=0.5, weight_decay=0.01, momentum=0.9)
    refs, mus = [p.detach().clone() for p in ps], [torch.zeros_like(p) for p in ps]
    before = idle.detach().clone()
    for _ in range(2):
        grads = [torch.randn_like(p) for p in ps]
        for p, g in zip(ps, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(grads):
            refs[i], mus[i] = lars_reference(refs[i], g, mus[i], 0.5, 0.01, 0.9, 0.001, adapt=True)
            assert torch.allclose(ps[i], refs[i], atol=1e-6), i
    assert torch.equal(idle, before) and idle not in opt.state


def test_lars_leaves_the_update_unscaled_for_a_zero_parameter():
    w = nn.Parameter(torch.zeros(3, 3))
    w.grad = torch.ones(3, 3)
    LARS([w], lr=0.1, momentum=0.0).step()
    assert torch.allclose(w, torch.full((3, 3), -0.1))


def groups_by_param(opt: torch.optim.Optimizer) -> dict[int, dict]:
    return {id(p): g for g in opt.param_groups for p in g["params"]}


def resnet_method(name: str, **overrides):
    method = METHODS[name]
    tiny = {"simsiam": {"proj_dim": 16, "pred_hidden_dim": 8},
            "barlow-twins": {"proj_hidden_dim": 32, "proj_output_dim": 16},
            "moco-v2": {"proj_hidden_dim": 32, "proj_output_dim": 16, "queue_size": 32},
            "dino": {"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8}}[name]
    return method(resnet18(in_chans=1, small_stem=True), method.config_class(**tiny, **overrides))


def step_values(name: str, lr: float = 0.4, wd: float = 0.1) -> tuple[object, dict[int, dict], object]:
    """The method, its optimiser's groups after apply_schedules(lr, wd), and its resolved optim options."""
    m = resnet_method(name)
    cfg = build_config({"method": name, "backbone": {"name": "resnet18"}}).optim
    opt = optimizer_for(m, cfg, world_batch=512)
    apply_schedules(opt, lr, wd)
    return m, groups_by_param(opt), cfg


def test_barlow_twins_trains_biases_and_norms_at_their_own_lr():
    """barlowtwins main.py 167-168: weights at lr x 0.2, biases and norms (ndim 1) at lr x 0.0048."""
    m, groups, _ = step_values("barlow-twins")
    conv, bn = m.backbone.conv1.weight, m.backbone.bn1.weight
    assert groups[id(conv)]["lr"] == pytest.approx(0.4)
    assert groups[id(bn)]["lr"] == pytest.approx(0.4 * 0.0048 / 0.2)
    assert groups[id(bn)]["weight_decay"] == 0 and groups[id(bn)]["lars_exclude"]


def test_simsiam_predictor_keeps_the_peak_lr():
    """main_simsiam.py 359-366: with --fix-pred-lr the predictor stays at init_lr = lr x batch / 256."""
    m, groups, cfg = step_values("simsiam", lr=0.001)
    assert groups[id(m.predictor[0].weight)]["lr"] == pytest.approx(cfg.lr * 512 / 256)
    assert groups[id(m.projector[0].weight)]["lr"] == pytest.approx(0.001)
    m.cfg.fix_pred_lr = False
    opt = build_optimizer(m, "sgd", peak_lr=1.0)
    apply_schedules(opt, 0.001, 0.0)
    assert groups_by_param(opt)[id(m.predictor[0].weight)]["lr"] == pytest.approx(0.001)


@pytest.mark.parametrize("name, decays_norms", [("moco-v2", True), ("simsiam", True), ("dino", False)])
def test_which_methods_decay_norms_and_biases(name, decays_norms):
    """MoCo v2 (main_moco.py 291-296) and SimSiam (main_simsiam.py 199-201) pass every parameter to SGD with
    weight_decay 1e-4; DINO excludes biases and norms (utils.get_params_groups)."""
    m, groups, _ = step_values(name)
    assert groups[id(m.backbone.conv1.weight)]["weight_decay"] == 0.1
    assert groups[id(m.backbone.bn1.weight)]["weight_decay"] == (0.1 if decays_norms else 0.0)


def two_grads() -> nn.Module:
    """Two parameters with gradient norms 10 and 1."""
    m = nn.ParameterList([nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))])
    m[0].grad, m[1].grad = torch.tensor([6.0, 8.0]), torch.tensor([0.0, 0.6, 0.8])
    return m


def test_clipping_per_parameter_or_of_the_global_norm():
    """parameter: DINO's utils.clip_gradients, each norm on its own; global: SimMIM's clip_grad_norm_, one
    scale for all, so that the gradients keep their direction."""
    m = two_grads()
    clip_gradients(m, 5.0, "parameter")
    assert torch.allclose(m[0].grad, torch.tensor([3.0, 4.0]), atol=1e-5)  # norm 10 -> 5
    assert torch.allclose(m[1].grad, torch.tensor([0.0, 0.6, 0.8]))  # norm 1 < 5: unchanged
    m = two_grads()
    clip_gradients(m, 5.0, "global")
    scale = 5.0 / 101 ** 0.5  # the global norm is sqrt(10^2 + 1^2)
    assert torch.allclose(m[0].grad, torch.tensor([6.0, 8.0]) * scale, atol=1e-5)
    assert torch.allclose(m[1].grad, torch.tensor([0.0, 0.6, 0.8]) * scale, atol=1e-5)
    with pytest.raises(ConfigError, match="--optim.clip-mode"):
        clip_gradients(two_grads(), 5.0, "layer")


@pytest.mark.parametrize("name, clip, mode", [("simmim", 5.0, "global"), ("dino", 3.0, "parameter")])
def test_each_recipe_clips_as_its_official_code(name, clip, mode):
    """microsoft/SimMIM main_simmim.py clip_grad_norm_(model.parameters(), 5.0); facebookresearch/dino
    utils.clip_gradients(student, 3.0), per parameter."""
    optim = build_config({"method": name}).optim
    assert (optim.clip_grad, optim.clip_mode) == (clip, mode)
    assert build_config({"method": name, "optim": {"clip_mode": "parameter"}}).optim.clip_mode == "parameter"


@pytest.mark.parametrize("name, exempt", [("simmim", True), ("dino", False)])
def test_simmim_keeps_cls_and_position_embeddings_out_of_weight_decay(name, exempt):
    """SimMIM's optimizer.py skips the ViT's no_weight_decay() = {pos_embed, cls_token} (its mask token is
    decayed); DINO's utils.get_params_groups decays them (3-d parameters)."""
    method = ddp_build(name)
    opt = optimizer_for(method, build_config({"method": name}).optim, world_batch=256)
    apply_schedules(opt, 0.1, 0.05)
    groups = groups_by_param(opt)
    bb = method.backbone
    assert groups[id(bb.cls_token)]["weight_decay"] == groups[id(bb.pos_embed)]["weight_decay"] == (
        0.0 if exempt else 0.05)
    assert groups[id(bb.blocks[0].attn.qkv.weight)]["weight_decay"] == 0.05
    assert groups[id(bb.blocks[0].norm1.weight)]["weight_decay"] == 0.0
    if name == "simmim":
        assert groups[id(method.mask_token)]["weight_decay"] == 0.05


def test_the_engine_clips_as_the_run_asks(tiny_cfg, monkeypatch):
    """The trainer hands --optim.clip-mode (SimMIM's recipe: global) to the clipping of every step."""
    seen = []
    monkeypatch.setattr("selfsup.engine.step.clip_gradients",
                        lambda model, clip, mode="parameter": seen.append((clip, mode)))
    trainer = pretrain.Trainer(tiny_cfg(method="simmim", optim={"batch_size": 8}, views={"n_local": 0}),
                               progress=False)
    trainer.setup()
    trainer._step(0, trainer.source.batch(0))
    assert seen == [(5.0, "global")]


@pytest.mark.parametrize("epochs, warm_epochs", [(100, 5), (40, 2), (800, 40), (1600, 40)])
def test_mae_warmup_keeps_its_official_share_of_a_shorter_run(epochs, warm_epochs):
    """facebookresearch/mae PRETRAIN.md: 40 warm-up epochs of 800 (and of 1600). A shorter run warms up for the
    same 5% of itself, so that a 100-epoch run does not spend 40% warming up and a 40-epoch one decays."""
    cfg = build_config({"method": "mae"}).optim
    per_epoch = 10
    lr = optim_schedules(cfg, epochs * per_epoch, per_epoch, 256)["lr"]
    assert int(np.argmax(lr)) == warm_epochs * per_epoch  # the peak ends the warm-up
    assert lr[-1] == pytest.approx(cfg.min_lr) and lr[-1] < lr.max()
    assert warmup_steps(cfg, epochs * per_epoch, per_epoch) == warm_epochs * per_epoch


def test_a_warmup_without_a_share_stays_as_set():
    """DINO's 10 warm-up epochs are its paper's for 100-epoch runs: kept, however short the run."""
    cfg = build_config({"method": "dino"}).optim
    assert cfg.warmup_max_share == 1.0 and warmup_steps(cfg, 200, 10) == 100
    assert warmup_steps(build_config({"method": "mae", "optim": {"warmup_max_share": 1.0}}).optim, 200, 10) == 200
