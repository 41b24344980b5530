"""What a pre-training config builds: crop and patch sizes resolved from the data, then the method around
a fresh backbone, with a clear error for each combination that cannot work."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from selfsup.config import ConfigError, PretrainConfig
from selfsup.data.channels import to_channels
from selfsup.data.views import VIEW_RECIPES, channel_stats
from selfsup.methods import METHODS, Method
from selfsup.methods.recipe import family
from selfsup.models import BACKBONES, VisionTransformer, build_backbone
from selfsup.models.io import BackboneSpec
from selfsup.models.vit import VIT_PRESETS, pick_patch_size


def resolve_sizes(cfg: PretrainConfig, image_size: int) -> PretrainConfig:
    """Fill in the crop sizes and ViT patch size left open (None) from the data's image size."""
    v, b = cfg.views, cfg.backbone
    g = v.global_size or image_size
    patch = b.patch_size
    if patch is None and b.name in VIT_PRESETS:
        patch = pick_patch_size(VIT_PRESETS[b.name].patch_size, g)
    unit = patch or 1
    local = v.local_size or max(unit, round(g * 96 / 224 / unit) * unit)
    return dataclasses.replace(cfg, views=dataclasses.replace(v, global_size=g, local_size=local),
                               backbone=dataclasses.replace(b, patch_size=patch))


def build_method(cfg: PretrainConfig, channels: int, init: nn.Module | None = None) -> Method:
    """The configured method around a fresh backbone, or one holding `init`'s weights (engine/init.py; the
    method's copies of the backbone then start from them too); sizes must be resolved (see resolve_sizes)."""
    v, b = cfg.views, cfg.backbone
    for name, size in (("views.global_size", v.global_size), ("views.local_size", v.local_size)):
        if b.patch_size and size % b.patch_size and (name.endswith("global_size") or v.n_local):
            raise ConfigError(f"--{name} {size} is not a multiple of the patch size {b.patch_size}: choose a "
                              f"multiple of {b.patch_size} or another --backbone.patch-size")
    if v.recipe not in VIEW_RECIPES:
        raise ConfigError(f"unknown --views.recipe {v.recipe!r}: choose one of {', '.join(VIEW_RECIPES)}")
    method = METHODS[cfg.method]
    if family(b.name) not in method.families:
        raise ConfigError(f"{cfg.method} needs a {' or '.join(method.families)} backbone, got --backbone.name "
                          f"{b.name}: choose one of {', '.join(n for n in BACKBONES if family(n) in method.families)}")
    check_views(cfg.method, method, v.n_global, v.n_local)
    check_train_pool(cfg.method, method, b.train_pool)
    try:
        backbone = build_backbone(b.name, v.global_size, method.input_channels(channels), b.patch_size,
                                  b.drop_path, pool=b.train_pool, width=b.width, depth=b.depth, stem=b.stem,
                                  layerscale=b.layerscale, registers=b.registers, ffn=b.ffn,
                                  num_heads=b.num_heads, pos_interp=b.pos_interp)
    except ValueError as e:  # a width that does not split into the preset's attention heads
        raise ConfigError(str(e)) from e
    if init is not None:
        from selfsup.engine.init import load_init

        load_init(backbone, init)
    if cfg.optim.freeze_patch_embed:
        if not isinstance(backbone, VisionTransformer):
            raise ConfigError(f"--optim.freeze-patch-embed freezes a ViT's patch embedding, but {b.name} is a "
                              "ResNet: drop it")
        backbone.patch_embed.requires_grad_(False)
    if b.patch_dropout:
        check_patch_dropout(cfg.method, method, b.name)
        backbone.patch_dropout = b.patch_dropout
    if cfg.optim.micro_batches > cfg.optim.batch_size:
        raise ConfigError(f"--optim.micro-batches {cfg.optim.micro_batches} is more parts than the "
                          f"{cfg.optim.batch_size} images of a batch: choose at most --optim.batch-size / "
                          "processes")
    backbone.micro_batches = cfg.optim.micro_batches
    try:
        built = method(backbone, cfg.method_cfg, n_global=v.n_global)
        if cfg.optim.eval_ema:
            built.average_backbone(cfg.optim.eval_ema)
        return built
    except ValueError as e:  # an option that does not fit the backbone or crops (e.g. MAE's uniform mask)
        raise ConfigError(str(e)) from e


def check_patch_dropout(name: str, method: type[Method], backbone: str) -> None:
    """Patch dropout needs a ViT and a method that reads its pooled features only."""
    if family(backbone) != "vit":
        raise ConfigError(f"--backbone.patch-dropout drops a ViT's patch tokens, but {backbone} is a ResNet: "
                          "set it to 0 or choose a vit-* backbone")
    if not method.pooled_only:
        raise ConfigError(f"{name} reads the ViT's patch grid or masks patches itself: set "
                          "--backbone.patch-dropout 0 (its own mask options set how much it hides)")


def check_train_pool(name: str, method: type[Method], train_pool: str) -> None:
    """A head reads the backbone's pooled feature only where the method reads it through the backbone's forward."""
    if train_pool != "cls" and not method.pooled_only:
        pooled = ", ".join(sorted(n for n, m in METHODS.items() if m.pooled_only))
        raise ConfigError(f"{name} reads the ViT's tokens itself, not its pooled feature: drop --backbone.train-pool "
                          f"{train_pool} (it applies to {pooled})")


def check_views(name: str, method: type[Method], n_global: int, n_local: int) -> None:
    """Multi-crop methods take any global and local crops, two at least; the others exactly their `n_views`."""
    if method.multicrop:
        if n_global + n_local < 2:
            raise ConfigError(f"{name} compares views of each image with each other: set --views.n-global 2, "
                              f"got {n_global} global and {n_local} local")
        return
    allowed = method.n_views_allowed or (method.n_views,)
    if n_global not in allowed or n_local:
        counts = " or ".join(map(str, allowed))
        what = "one view of each image" if allowed == (1,) else f"{counts} views of each image"
        fix = f"--views.n-global {n_global if n_global in allowed else counts}"
        multicrop = ", ".join(sorted(n for n, m in METHODS.items() if m.multicrop))
        raise ConfigError(f"{name} takes {what}, got --views.n-global {n_global} and --views.n-local {n_local}: "
                          f"set {fix} --views.n-local 0 (only {multicrop} take local crops)")


def backbone_spec(cfg: PretrainConfig, images: torch.Tensor, channels: int, mean: list[float], std: list[float]
                  ) -> BackboneSpec:
    """What the saved backbone reads: the data's channels and statistics, or, for a method whose backbone
    reads other channels (colorization: lightness of RGB), those of the images converted as evaluation
    converts them (data/channels.py), so that evaluation feeds the backbone what it trained on."""
    backbone_channels = METHODS[cfg.method].input_channels(channels)
    if backbone_channels != channels:
        mean, std = channel_stats(to_channels(images, backbone_channels))
    b = cfg.backbone
    return BackboneSpec(b.name, cfg.views.global_size, backbone_channels, b.patch_size, mean, std, b.pool, b.width,
                        b.depth, num_heads=b.num_heads, pos_interp=b.pos_interp, stem=b.stem, layerscale=b.layerscale,
                        registers=b.registers, ffn=b.ffn)
