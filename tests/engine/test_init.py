"""--backbone.init: a run starts from existing weights; heads fresh, architecture from the file, resume from the run."""

import dataclasses
import math

import pytest
import torch
from safetensors.torch import load_file

from selfsup.config import ConfigError
from selfsup.engine.init import load_init, resolve_init
from selfsup.engine.pretrain import Trainer, pretrain
from selfsup.models.io import file_sha256
from selfsup.models.vit import VisionTransformer

TWO_STEPS = {"epochs": 2 / 22}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained 1-step DINO run on digits (vit-cpu, 7-px patches): the weights the runs below start from."""
    from selfsup.config import build_config

    out = tmp_path_factory.mktemp("source")
    cfg = build_config({"method": "dino", "data": {"name": "digits"}, "backbone": {"name": "vit-cpu", "patch_size": 7},
                        "views": {"global_size": 28, "local_size": 14, "n_local": 0},
                        "optim": {"epochs": 1 / 22, "batch_size": 64, "warmup_epochs": 0},
                        "run": {"out": str(out), "eval_knn": False, "log_every": 1, "seed": 5},
                        "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}})
    pretrain(cfg, progress=False)
    return out


def exported(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "backbone.safetensors"))


def test_a_run_at_lr_0_exports_the_source_weights_and_a_normal_one_changes_them(tiny_cfg, source, tmp_path):
    src = exported(source)
    still = pretrain(tiny_cfg(backbone={"init": str(source)}, optim={**TWO_STEPS, "lr": 1e-12},
                              run={"out": str(tmp_path / "still")}), progress=False)
    moved = pretrain(tiny_cfg(backbone={"init": str(source)}, optim={**TWO_STEPS, "lr": 1e-2, "warmup_epochs": 0,
                                                                      "freeze_patch_embed": True},
                              run={"out": str(tmp_path / "moved")}, dino={"momentum_teacher": 0.5}), progress=False)
    a, b = exported(still.out), exported(moved.out)
    assert a.keys() == src.keys()
    assert max((a[k] - v).abs().max().item() for k, v in src.items()) < 1e-5  # the EMA teacher of an unmoved student
    assert max((b[k] - v).abs().max().item() for k, v in src.items()) > 1e-3
    student = torch.load(moved.out / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert torch.equal(student["backbone.patch_embed.proj.weight"], src["patch_embed.proj.weight"])  # frozen
    assert not torch.equal(student["backbone.blocks.0.attn.qkv.weight"], src["blocks.0.attn.qkv.weight"])
    config = (still.out / "config.yaml").read_text()
    assert f"init_sha256: {file_sha256(source / 'backbone.safetensors')}" in config
    assert f"init: {(source / 'backbone.safetensors').resolve()}" in config


def test_the_heads_start_fresh_and_the_teacher_from_the_file(tiny_cfg, source):
    trainer = Trainer(tiny_cfg(backbone={"init": str(source)}), progress=False)
    trainer.setup()
    src, method = exported(source), trainer.method
    for k, v in src.items():
        assert torch.equal(method.backbone.state_dict()[k], v), k
        assert torch.equal(method.teacher["backbone"].state_dict()[k], v), k
    head = torch.load(source / "checkpoints" / "last.pt", weights_only=True)["model"]["head.mlp.0.weight"]
    assert not torch.equal(method.head.state_dict()["mlp.0.weight"], head)


def test_backbone_frozen_for_its_epochs_while_the_heads_train(tiny_cfg, source, tmp_path):
    run = pretrain(tiny_cfg(backbone={"init": str(source)}, optim={**TWO_STEPS, "lr": 1e-2, "warmup_epochs": 0,
                                                                     "freeze_backbone_epochs": 1.0}), progress=False)
    state = torch.load(run.out / "checkpoints" / "last.pt", weights_only=True)["model"]
    src = exported(source)
    assert all(torch.equal(state["backbone." + k], v) for k, v in src.items())
    fresh = Trainer(tiny_cfg(backbone={"init": str(source)}, run={"out": str(tmp_path / "f")}), progress=False)
    fresh.setup()
    assert not torch.equal(state["head.mlp.0.weight"], fresh.method.head.mlp[0].weight)


def test_an_architecture_or_channel_mismatch_is_refused_in_one_line(tiny_cfg, source):
    with pytest.raises(ConfigError, match=r"--backbone.width 64 conflicts with .*width None: drop the option") as e:
        resolve_init(tiny_cfg(backbone={"init": str(source), "width": 64}), channels=1)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="reads 1-channel images but the data digits gives the backbone 3"):
        resolve_init(tiny_cfg(backbone={"init": str(source)}), channels=3)
    with pytest.raises(ConfigError, match="no such file"):
        resolve_init(tiny_cfg(backbone={"init": str(source / "nothing.pth")}), channels=1)
    with pytest.raises(ConfigError, match="not the recorded"):
        resolve_init(tiny_cfg(backbone={"init": str(source), "init_sha256": "0" * 64}), channels=1)


def test_the_architecture_is_taken_from_the_file(tiny_cfg, source):
    cfg, model = resolve_init(tiny_cfg(backbone={"init": str(source), "patch_size": None}), channels=1)
    assert cfg.backbone.patch_size == 7 and cfg.backbone.name == "vit-cpu" and model is not None


def test_the_evaluated_feature_is_the_files_unless_given(tiny_cfg, source, tmp_path):
    from selfsup.models.io import load_backbone, save_backbone

    backbone, spec = load_backbone(source / "backbone.safetensors")
    save_backbone(backbone, dataclasses.replace(spec, pool="patches"), tmp_path / "patches.safetensors")
    cfg, _ = resolve_init(tiny_cfg(backbone={"init": str(tmp_path / "patches.safetensors")}), channels=1)
    assert cfg.backbone.pool == "patches"
    cfg, _ = resolve_init(tiny_cfg(backbone={"init": str(tmp_path / "patches.safetensors"), "pool": "mean"}),
                          channels=1)
    assert cfg.backbone.pool == "mean"


def test_the_position_grid_is_resampled_to_the_crop_as_the_source_computes_it():
    torch.manual_seed(0)
    for interp in ("size", "dino"):
        src = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                                pos_interp=interp).eval()
        net = VisionTransformer(img_size=14, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                                pos_interp=interp).eval()
        load_init(net, src)
        assert net.pos_embed.shape[1] == 1 + 4
        x = torch.randn(3, 1, 14, 14)
        torch.testing.assert_close(net(x), src(x), atol=1e-5, rtol=1e-5)
        assert not math.isclose(float((net.pos_embed[:, 1:] - src.pos_embed[:, 1:5]).abs().max().detach()), 0.0)


def test_resume_continues_from_the_run_not_the_file(tiny_cfg, source, tmp_path):
    init = tmp_path / "init.safetensors"
    init.write_bytes((source / "backbone.safetensors").read_bytes())
    straight = pretrain(tiny_cfg(backbone={"init": str(init)}, optim=TWO_STEPS, run={"out": str(tmp_path / "a")}),
                        progress=False)
    cfg = tiny_cfg(backbone={"init": str(init)}, optim=TWO_STEPS, run={"out": str(tmp_path / "b")})
    assert Trainer(cfg, progress=False, stop_at_step=1).fit().interrupted
    init.unlink()  # a resume neither reads nor needs the file
    second = pretrain(cfg, resume=True, progress=False)
    assert second.steps == straight.steps == 2
    a = torch.load(straight.out / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(second.out / "checkpoints" / "last.pt", weights_only=True)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
