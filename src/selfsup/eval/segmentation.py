"""Segmentation from attention (`selfsup eval segmentation`): how well a ViT's [CLS] attention masks cover the
objects of images with known masks, without any training.

As DINO's evaluation of its figure 4 (dino#54): each head's attention is cut to a mask keeping `threshold`
of its mass; for each ground-truth object the best head's Jaccard (IoU) is taken, averaged over the image's
objects, then over the images. Also reported: the same against the foreground (the union of the objects),
the mask of the heads' mean attention, each head's own average, and, with `--rollout`, the rollout's mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from selfsup.eval.context import EvalContext, EvalError
from selfsup.insight.attention import cls_attention, mass_masks, rollout, upsample
from selfsup.models.vit import VisionTransformer
from selfsup.options import opt


@dataclass
class SegmentationOptions:
    """Options of `selfsup eval segmentation`."""

    threshold: float = opt(0.6, "Share of each head's attention mass its mask keeps (DINO's figures and table: "
                           "0.6). Lower gives tighter masks, which suit small objects.", paper=0.6, above=0, high=1)
    max_images: int = opt(1000, "Test images scored (the first ones); the score's standard error shrinks as "
                          "1/sqrt(images).", low=1)
    batch_size: int = opt(64, "Images per forward pass (memory only: attention maps are tokens^2 per head).",
                          low=1)
    rollout: bool = opt(False, "Also score the mask of attention rollout through all blocks.")


def jaccard(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """IoU of bool masks: pred (..., H, W) against truth (H, W) -> (...) in [0, 1] (0 when both are empty)."""
    inter = (pred & truth).flatten(-2).sum(-1).float()
    union = (pred | truth).flatten(-2).sum(-1).float()
    return inter / union.clamp_min(1)


def best_head_jaccard(masks: torch.Tensor, objects: torch.Tensor) -> tuple[float, torch.Tensor]:
    """DINO's score of one image: masks (heads, H, W) bool, objects (H, W) ids (0 background) -> the mean over
    objects of the best head's IoU, and the (heads,) mean over objects of each head's IoU."""
    ids = [i for i in objects.unique().tolist() if i != 0]
    if not ids:
        raise EvalError("an image without objects cannot be scored: its mask map is all background")
    per = torch.stack([jaccard(masks, objects == i) for i in ids])  # (objects, heads)
    return per.max(dim=1).values.mean().item(), per.mean(dim=0)


@torch.no_grad()
def image_masks(model: VisionTransformer, x: torch.Tensor, threshold: float, with_rollout: bool
                ) -> dict[str, torch.Tensor]:
    """Masks at image resolution of a normalised batch (B, C, H, W): "heads" (B, heads, H, W), "mean"
    (B, 1, H, W) and, with rollout, "rollout" (B, 1, H, W)."""
    s, size = model.stride, tuple(x.shape[-2:])  # masks: each cell over its s x s pixels, cropped to the image
    maps = cls_attention(model, x)  # (B, heads, h, w)
    out = {"heads": upsample(mass_masks(maps, threshold), s, size),
           "mean": upsample(mass_masks(maps.mean(1, keepdim=True), threshold), s, size)}
    if with_rollout:
        out["rollout"] = upsample(mass_masks(rollout(model, x)[:, None], threshold), s, size)
    return out


def segmentation_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Jaccard of attention masks against the test split's object masks (see the module's docstring)."""
    opts = ctx.options or SegmentationOptions()
    model = ctx.backbone
    if not isinstance(model, VisionTransformer):
        raise EvalError(f"segmentation from attention needs a ViT, but {ctx.run_dir} holds a "
                        f"{ctx.pretrain.get('backbone', 'ResNet')}")
    test = ctx.split("test", labelled=False)
    if test.masks is None:
        raise EvalError(f"--data {ctx.data} has no object masks: use --data cluttered (or cluttered-96)")
    n = min(opts.max_images, len(test))
    sums: dict[str, float] = {"jaccard": 0.0, "jaccard_foreground": 0.0, "jaccard_mean_heads": 0.0}
    per_head = torch.zeros(model.num_heads)
    model.eval()
    for start in range(0, n, opts.batch_size):
        x = ctx.prepare(test.images[start:min(start + opts.batch_size, n)].to(ctx.device))  # never past image n
        masks = {k: v.cpu() for k, v in image_masks(model, x, opts.threshold, opts.rollout).items()}
        for b, objects in enumerate(test.masks[start:start + len(x)]):
            best, heads = best_head_jaccard(masks["heads"][b], objects)
            sums["jaccard"] += best
            per_head += heads
            sums["jaccard_foreground"] += jaccard(masks["heads"][b], objects > 0).max().item()
            sums["jaccard_mean_heads"] += best_head_jaccard(masks["mean"][b], objects)[0]
            if opts.rollout:
                sums["jaccard_rollout"] = sums.get("jaccard_rollout", 0.0) + best_head_jaccard(
                    masks["rollout"][b], objects)[0]
    numbers = {k: round(100 * v / n, 2) for k, v in sums.items()}
    settings = {"n_images": n, "threshold": opts.threshold, "image_size": list(test.images.shape[-2:]),
                "patch_size": model.patch_size, "per_head": [round(100 * v, 2) for v in (per_head / n).tolist()]}
    return {**numbers, "settings": settings}


__all__ = ["SegmentationOptions", "best_head_jaccard", "image_masks", "jaccard", "segmentation_protocol"]
