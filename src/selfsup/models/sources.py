"""What each official source's own code does with its ViTs, which the weights do not store: attention heads per
width, the input normalisation, how position embeddings are resized for other image sizes, and the feature its
linear evaluation reads. `selfsup convert` takes them as the defaults of --num-heads, --mean/--std, --pos-interp
and --pool; each flag overrides its default.

  dino     vision_transformer.py vit_tiny/small/base (3, 6, 12 heads); eval_linear.py: ImageNet mean/std, the
           [CLS] tokens of the last 4 blocks for ViT-S (`--n_last_blocks 4`), [CLS] and mean patch token of the
           last block for ViT-B (`--n_last_blocks 1 --avgpool_patchtokens true`); interpolate_pos_encoding: bicubic
           by the scale factor (h + 0.1) / side ("dino").
  dinov2   models/vision_transformer.py vit_small/base/large/giant2 (6, 12, 16, 24 heads); data/transforms.py:
           ImageNet mean/std; eval/linear.py create_linear_input and hub/classifiers.py (the released linear heads):
           [CLS] and mean patch token; hub/backbones.py: "dino" resizing for the original models, antialiased
           resizing to the grid for the `_reg` ones (interpolate_antialias True, offset 0: "size-antialias").
  mae      models_vit.py vit_base/large/huge (12, 16, 16 heads); main_linprobe.py: ImageNet mean/std and the [CLS]
           token (global_pool False); util/pos_embed.py interpolate_pos_embed: bicubic to the grid ("size").
  moco-v3  vits.py vit_small/base (12 heads both: its ViT-S has 12 heads of 32 channels); main_lincls.py: ImageNet
           mean/std and the [CLS] token (timm's head); its code runs at the training size only (timm 0.4.9), so
           other sizes resize the stored sine-cosine embeddings bicubically to the grid ("size").
  timm     vision_transformer.py: 3, 6, 12, 16, 16, 24 heads for widths 192 to 1536; `_cfg`'s default mean/std
           0.5/0.5 (IMAGENET_INCEPTION_*, its augreg ViTs), while its .dino, .mae and _dinov2 entries use
           ImageNet's; resample_abs_pos_embed (layers/pos_embed.py): bicubic to the grid with antialias
           ("size-antialias"); global_pool "token": the [CLS] token.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("dino", "dinov2", "mae", "moco-v3", "timm")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
INCEPTION_MEAN = [0.5, 0.5, 0.5]  # timm's IMAGENET_INCEPTION_MEAN / _STD
INCEPTION_STD = [0.5, 0.5, 0.5]


@dataclass(frozen=True)
class SourceDefaults:
    """One source's defaults (see the module's docstring for where each is from)."""

    heads: dict[int, int]  # ViT width -> attention heads of the official definitions
    mean: list[float]
    std: list[float]
    pos_interp: str  # vit.POS_INTERPS
    pool: str  # vit.POOLS
    note: str = ""  # said when the defaults are used: what else the source uses


DEFAULTS = {
    "dino": SourceDefaults({192: 3, 384: 6, 768: 12}, IMAGENET_MEAN, IMAGENET_STD, "dino", "cls-last4"),
    "dinov2": SourceDefaults({384: 6, 768: 12, 1024: 16, 1536: 24}, IMAGENET_MEAN, IMAGENET_STD, "dino",
                             "cls+mean"),
    "mae": SourceDefaults({768: 12, 1024: 16, 1280: 16}, IMAGENET_MEAN, IMAGENET_STD, "size", "cls"),
    "moco-v3": SourceDefaults({384: 12, 768: 12}, IMAGENET_MEAN, IMAGENET_STD, "size", "cls"),
    "timm": SourceDefaults({192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1536: 24}, INCEPTION_MEAN, INCEPTION_STD,
                           "size-antialias", "cls",
                           note="mean/std 0.5 are timm's default ViTs' (augreg); its .dino, .mae and _dinov2 "
                           "entries use ImageNet's: pass --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225 for them"),
}


def official_heads(source: str, width: int) -> int | None:
    """Attention heads of the source's official ViT of this width (heads are not stored in the weights), or None
    for a width it has no model of."""
    return DEFAULTS[source].heads.get(width)


def default_pos_interp(source: str, registers: int) -> str:
    """The source's position-embedding resizing; DINOv2's register models resize as its hub sets them."""
    return "size-antialias" if source == "dinov2" and registers else DEFAULTS[source].pos_interp


def default_pool(source: str, width: int) -> str:
    """The feature the source's linear evaluation reads; DINO's ViT-B (width 768 and up) reads [CLS] + mean."""
    return "cls+mean" if source == "dino" and width >= 768 else DEFAULTS[source].pool


def default_norm(source: str, in_chans: int) -> tuple[list[float], list[float]]:
    """Input mean and std: the source's for RGB; ImageNet's grey-level mean and std for other channel counts."""
    if in_chans == 3:
        return list(DEFAULTS[source].mean), list(DEFAULTS[source].std)
    return [0.449] * in_chans, [0.226] * in_chans


__all__ = ["DEFAULTS", "IMAGENET_MEAN", "IMAGENET_STD", "SOURCES", "SourceDefaults", "default_norm",
           "default_pool", "default_pos_interp", "official_heads"]
