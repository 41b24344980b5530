"""--optim.eval-ema: an EMA of the backbone's weights is evaluated and exported in place of the trained ones."""

import pytest
import torch

from selfsup.config import ConfigError
from selfsup.engine.build import build_method, resolve_sizes
from selfsup.engine.pretrain import Trainer, pretrain
from selfsup.models.io import load_backbone

SIMCLR = {"method": "simclr", "views": {"n_local": 0}, "backbone": {"stem": "conv", "drop_path": 0.0}}


def test_the_average_follows_the_ema_formula_and_copies_the_batchnorm_statistics(tiny_cfg):
    method = build_method(resolve_sizes(tiny_cfg(**SIMCLR, optim={"eval_ema": 0.9}), 1000), channels=1)
    before = {k: v.clone() for k, v in method.averaged.named_parameters()}
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
        for b in method.backbone.buffers():
            b.add_(2)
    method.update_average()
    online = dict(method.backbone.named_parameters())
    for k, v in method.averaged.named_parameters():
        assert torch.allclose(v, 0.9 * before[k] + 0.1 * online[k]), k
    assert all(torch.equal(a, b) for a, b in zip(method.averaged.buffers(), method.backbone.buffers(), strict=True))
    assert method.evaluated_backbone() is method.averaged
    assert not any(p.requires_grad for p in method.averaged.parameters())


def test_without_it_nothing_is_averaged(tiny_cfg):
    method = build_method(resolve_sizes(tiny_cfg(**SIMCLR), 1000), channels=1)
    method.update_average()
    assert method.averaged is None and method.evaluated_backbone() is method.backbone
    assert not any(k.startswith("averaged.") for k in method.state_dict())


def test_a_method_with_a_momentum_teacher_refuses_it(tiny_cfg):
    with pytest.raises(ConfigError, match="--optim.eval-ema: dino already evaluates a momentum teacher"):
        build_method(resolve_sizes(tiny_cfg(optim={"eval_ema": 0.99}), 1000), channels=1)


def test_the_run_exports_the_average_and_resumes_it_exactly(tiny_cfg, tmp_path):
    straight = pretrain(tiny_cfg(**SIMCLR, optim={"eval_ema": 0.5}, run={"out": str(tmp_path / "a")}),
                        progress=False)
    ckpt = torch.load(straight.out / "checkpoints" / "last.pt", weights_only=True)
    averaged = {k[len("averaged."):]: v for k, v in ckpt["model"].items() if k.startswith("averaged.")}
    trained = {k[len("backbone."):]: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
    exported = load_backbone(straight.out / "backbone.safetensors")[0].state_dict()
    assert all(torch.equal(exported[k], v) for k, v in averaged.items())
    assert not all(torch.equal(averaged[k], trained[k]) for k in averaged)
    cfg = tiny_cfg(**SIMCLR, optim={"eval_ema": 0.5}, run={"out": str(tmp_path / "b")})
    Trainer(cfg, progress=False, stop_at_step=2).fit()
    pretrain(cfg, resume=True, progress=False)
    resumed = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, resumed[k]) for k, v in ckpt["model"].items() if k.startswith("averaged."))
