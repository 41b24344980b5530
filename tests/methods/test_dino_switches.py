"""DINO's ablation switches (--dino.centering, sharpening, loss, predictor): each changes what it names and
nothing else, in the resolved config and in one step."""

import math

import pytest
import torch

from selfsup.config import build_config
from selfsup.methods.dino import DINO, DinoConfig
from selfsup.models.vit import VisionTransformer

TINY = {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "freeze_last_layer": 0}


def tiny(**kw) -> DINO:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)
    m = DINO(vit, DinoConfig(**{**TINY, **kw}))
    m.setup(total_steps=4, steps_per_epoch=2)
    return m


def views():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 1, 16, 16, generator=g), torch.randn(4, 1, 16, 16, generator=g),
            torch.randn(4, 1, 8, 8, generator=g)]


def one_step(m: DINO) -> tuple[float, dict[str, float]]:
    """Step 0 with SGD; returns the loss and the logs."""
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    loss, logs = m(views(), 0)
    loss.backward()
    m.on_after_backward(0)
    opt.step()
    m.on_after_step(0)
    return loss.item(), logs


def config_changes(**switch) -> set[tuple[str, str]]:
    """(section, option) pairs whose resolved value differs with `switch` under [dino]."""
    def resolved(extra):
        return build_config({"method": "dino", "dino": {**TINY, **extra}}).to_dict()
    a, b = resolved({}), resolved(switch)
    return {(s, k) for s in a for k in (a[s] if isinstance(a[s], dict) else {}) if a[s][k] != b[s][k]}


@pytest.mark.parametrize("switch", [{"centering": "none"}, {"centering": "sinkhorn_knopp"}, {"sharpening": False},
                                    {"loss": "mse"},
                                    {"predictor": True}, {"teacher": "copy"}])
def test_a_switch_changes_only_its_own_option_in_the_resolved_config(switch):
    assert config_changes(**switch) == {("dino", next(iter(switch)))}


def test_centering_none_keeps_the_centre_at_zero_and_changes_nothing_else():
    on, off = tiny(), tiny(centering="none")
    loss_on, _ = one_step(on)
    loss_off, _ = one_step(off)
    assert loss_on == loss_off  # step 0: both centres start at 0
    assert torch.count_nonzero(on.loss_fn.center) > 0 and torch.count_nonzero(off.loss_fn.center) == 0
    for (name, a), b in zip(on.named_parameters(), off.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_sinkhorn_knopp_keeps_no_centre_and_gives_every_prototype_its_share_of_the_batch():
    """DINOv2's sinkhorn_knopp_teacher in place of the centre: the teacher's batch-mean distribution is nearly
    uniform over the K prototypes (each gets about 1/K of the batch), unlike the softmax of the centred outputs."""
    centred, sk = tiny(), tiny(centering="sinkhorn_knopp")
    _, logs_c = one_step(centred)
    _, logs_sk = one_step(sk)
    assert torch.count_nonzero(sk.loss_fn.center) == 0 and torch.count_nonzero(centred.loss_fn.center) > 0
    assert logs_sk["teacher_batch_entropy"] > 0.99 * logs_sk["log_K"] > logs_c["teacher_batch_entropy"]
    for (name, a), b in zip(tiny().named_parameters(), tiny(centering="sinkhorn_knopp").parameters(), strict=True):
        assert torch.equal(a, b), name


def test_sharpening_off_gives_the_teacher_the_student_temperature():
    on, off = tiny(warmup_teacher_temp=0.02, warmup_teacher_temp_epochs=1), tiny(sharpening=False)
    assert on.teacher_temp[0] == pytest.approx(0.02) and on.teacher_temp[-1] == pytest.approx(0.04)
    assert list(off.teacher_temp) == [0.1] * 4 and off.schedule_values(0)["teacher_temp"] == 0.1
    _, logs_on = one_step(on)
    _, logs_off = one_step(off)
    assert logs_off["teacher_entropy"] > logs_on["teacher_entropy"]  # a softer teacher
    for (name, a), b in zip(tiny().named_parameters(), tiny(sharpening=False).parameters(), strict=True):
        assert torch.equal(a, b), name


def test_mse_loss_is_the_squared_distance_of_the_distributions_and_keeps_the_cross_entropy_logged():
    ce, mse = tiny(), tiny(loss="mse")
    loss_ce, logs_ce = one_step(ce)
    loss_mse, logs_mse = one_step(mse)
    m = tiny(loss="mse")
    with torch.no_grad():
        v = views()
        t = m.teacher["head"](m.teacher["backbone"](torch.cat(v[:2])))
        s = m.head(torch.cat([m.backbone(torch.cat(v[:2])), m.backbone(v[2])]))
        q = torch.softmax(t / 0.04, -1).view(2, 4, -1)
        p = torch.softmax(s / 0.1, -1).view(3, 4, -1)
        want = sum(((q[i] - p[j]) ** 2).sum(-1).mean() for i in range(2) for j in range(3) if i != j) / 4
    assert loss_mse == pytest.approx(want.item(), rel=1e-5)
    assert logs_mse["cross_entropy"] == pytest.approx(loss_ce, rel=1e-5)  # the same H, another loss
    assert logs_ce["cross_entropy"] == pytest.approx(loss_ce, rel=1e-5) and not math.isclose(loss_ce, loss_mse)


def test_predictor_is_on_the_student_only():
    plain, pred = tiny(), tiny(predictor=True)
    extra = {n for n, _ in pred.named_parameters()} - {n for n, _ in plain.named_parameters()}
    assert extra and all(n.startswith("predictor.") for n in extra)
    assert {n for n, _ in plain.named_parameters()} <= {n for n, _ in pred.named_parameters()}
    v = views()
    with torch.no_grad():
        feats = pred.backbone(v[0])
        assert torch.equal(pred.teacher["head"](pred.teacher["backbone"](v[0])),
                           plain.teacher["head"](plain.teacher["backbone"](v[0])))
        assert not torch.allclose(pred.head(feats, pred.predictor), plain.head(feats))
    loss, _ = one_step(pred)
    assert all(p.grad is not None for p in pred.predictor.parameters()) and math.isfinite(loss)
