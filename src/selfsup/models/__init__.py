"""Backbones: Vision Transformers and ResNets, built by name."""

from __future__ import annotations

from torch import nn

from selfsup.models.vit import VIT_PRESETS, VisionTransformer, vit

RESNETS = ("resnet18", "resnet50")
BACKBONES = tuple(VIT_PRESETS) + RESNETS


def build_backbone(name: str, img_size: int, in_chans: int, patch_size: int | None = None,
                   drop_path: float = 0.0, pool: str = "cls", width: int | None = None,
                   depth: int | None = None, num_heads: int | None = None, pos_interp: str = "size",
                   stem: str = "patch", layerscale: float | None = None, registers: int = 0,
                   ffn: str = "mlp") -> nn.Module:
    """A backbone whose forward maps (B, in_chans, H, W) to (B, feature_dim) features.

    ResNets get the small-image stem (3x3 conv, no max-pool) for images of 64 px or less and always
    average-pool; `pool` (cls, mean, cls+mean, cls-last4, patches: see `VisionTransformer`) picks a ViT's
    feature. `width` and `depth` override a ViT preset's; a ResNet's `width` is its first stage's channels
    (64 by default) and its depth is in its name. `num_heads` and `pos_interp` (see `vit.POS_INTERPS`) are for
    ViTs converted from official weights (`selfsup convert`). `layerscale` (LayerScale's initial value),
    `registers` (register tokens) and `ffn` ("mlp" or "swiglu") are DINOv2's additions to the ViT.
    """
    if name in VIT_PRESETS:
        return vit(name, img_size, in_chans, patch_size, drop_path, pool, width, depth, num_heads, pos_interp, stem,
                   layerscale, registers, ffn)
    if name in RESNETS:
        from selfsup.models.resnet import ResNet

        if layerscale or registers or ffn != "mlp":
            raise ValueError(f"LayerScale, register tokens and the SwiGLU feed-forward are ViT options: {name} is a "
                             "ResNet (drop --backbone.layerscale, --backbone.registers and --backbone.ffn)")
        if depth is not None:
            raise ValueError(f"--backbone.depth is for ViTs: {name}'s depth is in its name (choose one of "
                             f"{', '.join(RESNETS)})")
        return ResNet(depth=int(name[6:]), in_chans=in_chans, small_stem=img_size <= 64, width=width or 64)
    raise ValueError(f"unknown --backbone {name!r}: choose one of {', '.join(BACKBONES)}")


__all__ = ["BACKBONES", "VisionTransformer", "build_backbone"]
