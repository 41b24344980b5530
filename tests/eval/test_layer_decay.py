import re

import pytest
import torch

from selfsup.eval.finetune import Classifier, FinetuneConfig, train_classifier
from selfsup.eval.layer_decay import lr_scales, param_groups, vit_layer_id
from selfsup.models import build_backbone

DECAY = 0.5


def expected_scale(name: str, depth: int = 4) -> float:
    """The MAE/BEiT table written out by hand for vit-cpu (depth 4) inside a Classifier."""
    if re.fullmatch(r"backbone\.(cls_token|pos_embed|patch_embed\.proj\.(weight|bias))", name):
        return DECAY ** (depth + 1)  # layer 0
    block = re.fullmatch(r"backbone\.blocks\.(\d)\..+", name)
    if block:
        return DECAY ** (depth - int(block.group(1)))  # block i is layer i + 1
    assert re.fullmatch(r"backbone\.norm\.(weight|bias)|head\.(weight|bias)", name), name
    return 1.0  # layer depth + 1


def vit_classifier() -> Classifier:
    torch.manual_seed(0)
    return Classifier(build_backbone("vit-cpu", 28, 1), 10)


def test_every_vit_parameter_gets_its_layer_scale():
    model = vit_classifier()
    scales = lr_scales(model, DECAY)
    assert set(scales) == {n for n, _ in model.named_parameters()}
    for name, scale in scales.items():
        assert scale == pytest.approx(expected_scale(name)), name
    assert scales["head.weight"] == 1.0 and scales["backbone.norm.weight"] == 1.0
    assert scales["backbone.patch_embed.proj.weight"] == pytest.approx(0.5 ** 5)
    assert scales["backbone.blocks.0.attn.qkv.weight"] == pytest.approx(0.5 ** 4)
    assert scales["backbone.blocks.3.mlp.fc2.bias"] == pytest.approx(0.5)


def test_layer_ids_of_a_bare_vit():
    assert [vit_layer_id(n, 12) for n in ("cls_token", "pos_embed", "patch_embed.proj.weight")] == [0, 0, 0]
    assert vit_layer_id("blocks.0.norm1.weight", 12) == 1 and vit_layer_id("blocks.11.mlp.fc1.bias", 12) == 12
    assert vit_layer_id("norm.weight", 12) == 13 and vit_layer_id("head.weight", 12) == 13
    bare = build_backbone("vit-cpu", 28, 1)
    scales = lr_scales(bare, DECAY)
    assert scales["norm.bias"] == 1.0 and scales["cls_token"] == pytest.approx(DECAY ** 5)


def test_groups_split_weight_decay_and_cover_every_parameter_once():
    model = vit_classifier()
    groups = param_groups(model, weight_decay=0.05, layer_decay=DECAY)
    names = [n for g in groups for n in g["names"]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    params = dict(model.named_parameters())
    for g in groups:
        for name, p in zip(g["names"], g["params"], strict=True):
            assert p is params[name]
            assert g["lr_scale"] == pytest.approx(expected_scale(name))
            no_decay = p.ndim == 1 or name.split(".")[-1] in ("pos_embed", "cls_token")
            assert g["weight_decay"] == (0.0 if no_decay else 0.05), name
    no_wd = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert {"backbone.pos_embed", "backbone.cls_token", "head.bias", "backbone.blocks.2.norm1.weight"} <= no_wd
    assert "head.weight" not in no_wd and "backbone.blocks.2.attn.qkv.weight" not in no_wd


def test_resnet_has_no_layer_decay():
    model = Classifier(build_backbone("resnet18", 28, 1), 10)
    assert set(lr_scales(model, 0.65).values()) == {1.0}
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.65)
    assert len(groups) == 2 and {g["lr_scale"] for g in groups} == {1.0}
    no_wd = next(g for g in groups if g["weight_decay"] == 0)["names"]
    assert "backbone.bn1.weight" in no_wd and "backbone.layer1.0.bn2.bias" in no_wd and "head.bias" in no_wd
    assert "backbone.conv1.weight" not in no_wd and "head.weight" not in no_wd


def test_no_decay_is_scale_one_and_bad_values_are_refused():
    assert set(lr_scales(vit_classifier(), 1.0).values()) == {1.0}
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="layer_decay"):
            lr_scales(vit_classifier(), bad)


def test_training_step_moves_each_parameter_by_its_scaled_rate():
    """One AdamW step moves every element by lr x scale x g / (|g| + eps), i.e. at most lr x scale, and the
    largest move in each tensor reaches it: the loop applies each group's lr_scale."""
    torch.manual_seed(0)
    backbone = build_backbone("vit-cpu", 28, 1)
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(16) % 4
    cfg = FinetuneConfig(epochs=1, batch_size=16, warmup_epochs=0, weight_decay=0.0, layer_decay=DECAY,
                         drop_path=0.0, crop_scale=(1.0, 1.0), flip=0.0, head_init_std=0.02)
    res = train_classifier(backbone, lambda x: x, images, labels, 4, cfg)
    assert res.steps == 1
    lr = res.settings["peak_lr"]
    before = dict(backbone.named_parameters())
    for name, p in res.model.backbone.named_parameters():
        moved = (p.detach() - before[name].detach()).abs().max().item()
        assert moved == pytest.approx(lr * expected_scale("backbone." + name), rel=1e-2), name
