"""What a ViT attends to: the [CLS] token's attention over the patches, per head, and the masks cut from it.

As DINO's visualize_attention.py: the last block's softmax attention, the CLS row over the patch keys
(the CLS key itself is dropped), reshaped to the patch grid; a head's mask keeps the most-attended patches
holding `threshold` of its attention mass (sort, normalise, cumulative sum > 1 - threshold, un-sort).
Attention rollout (Abnar & Zuidema 2020) follows the CLS token through every block instead: the heads'
mean plus the identity (the residual path), rows renormalised, multiplied from the first block to the last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.models.vit import VisionTransformer


def crop_to_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(..., H, W) -> (..., H - H % p, W - W % p): the top-left crop the patch grid covers (as DINO)."""
    h, w = images.shape[-2] - images.shape[-2] % patch_size, images.shape[-1] - images.shape[-1] % patch_size
    if h == 0 or w == 0:
        raise ValueError(f"image of {images.shape[-2]}x{images.shape[-1]} px is smaller than one "
                         f"{patch_size}-px patch: use a larger image or --size")
    return images[..., :h, :w]


def crop_to_grid(model: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> what the model's stem maps to a whole token grid: the top-left crop to whole patches for
    the patch stem, the image itself for the convolutional stem (which takes any size)."""
    return images if model.patch_embed.fits(*images.shape[-2:]) else crop_to_patches(images, model.stride)


@torch.no_grad()
def cls_attention(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Last block's CLS -> patch attention: (B, C, H, W) normalised input -> (B, heads, h, w).

    Each head's map sums to 1 - (the CLS token's attention to itself and to the register tokens): registers are
    left out of the maps, as in Darcet et al.'s figures."""
    attn = model.get_last_selfattention(x)  # (B, heads, 1 + R + h*w, 1 + R + h*w)
    return attn[:, :, 0, model.n_prefix:].reshape(*attn.shape[:2], *model.grid_size(*x.shape[-2:]))


@torch.no_grad()
def rollout(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Attention rollout of the CLS token over the patches: (B, C, H, W) -> (B, h, w), each map summing to
    1 - (its share on the CLS token and the registers). Block by block: one block's attention is held at a time,
    not every block's."""
    tokens, joint = model.prepare_tokens(x), None  # (B, T, D), T = 1 + R + h*w
    for blk in model.blocks:
        tokens, attn = blk(tokens, return_attention=True)  # attn (B, heads, T, T)
        a = rollout_step(attn)
        joint = a if joint is None else a @ joint  # (B, T, T)
        del attn
    return joint[:, 0, model.n_prefix:].reshape(len(x), *model.grid_size(*x.shape[-2:]))


def rollout_step(attn: torch.Tensor) -> torch.Tensor:
    """One block's contribution to rollout: (B, heads, T, T) -> (B, T, T), mean over heads plus the identity,
    rows renormalised to sum to 1."""
    a = attn.mean(dim=1) + torch.eye(attn.shape[-1], dtype=attn.dtype, device=attn.device)
    return a / a.sum(dim=-1, keepdim=True)


def mass_masks(maps: torch.Tensor, threshold: float = 0.6) -> torch.Tensor:
    """(..., h, w) non-negative maps -> (..., h, w) bool: the smallest set of cells, most attended first, that
    holds more than `threshold` of each map's mass (DINO's visualize_attention.py, `--threshold`)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}: it is the share of attention mass kept")
    flat = maps.flatten(-2)  # (..., h*w)
    val, idx = torch.sort(flat, dim=-1)  # ascending
    cum = torch.cumsum(val / val.sum(dim=-1, keepdim=True).clamp_min(1e-12), dim=-1)
    keep = cum > 1 - threshold  # the top cells whose mass sums to about `threshold`
    return torch.zeros_like(keep).scatter_(-1, idx, keep).reshape(maps.shape)


def upsample(maps: torch.Tensor, stride: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(..., h, w) token-grid maps or masks -> (..., h*s, w*s), each cell repeated over its s x s pixels (nearest,
    as DINO's figures), then cropped to `size` (H, W) when given: the convolutional stem's last cells reach past
    the image."""
    out = maps.repeat_interleave(stride, dim=-2).repeat_interleave(stride, dim=-1)
    return out if size is None else out[..., :size[0], :size[1]]


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., h, w) float maps -> (..., H, W), bilinear: for smooth overlays on an image of another size."""
    lead = maps.shape[:-2]
    out = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=size, mode="bilinear",
                        align_corners=False)
    return out.reshape(*lead, *size)


__all__ = ["cls_attention", "crop_to_grid", "crop_to_patches", "mass_masks", "resize_maps", "rollout",
           "rollout_step", "upsample"]
