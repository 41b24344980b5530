"""Resizing an already loaded image set to a square side (for sources with a fixed native size)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from selfsup.data.dataset import DataError, ImageSet, Splits


def resize_square(images: torch.Tensor, size: int, batch: int = 4096) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size) uint8: centre square crop, then bilinear resize
    (antialiased when shrinking)."""
    if size < 1:
        raise DataError(f"image size must be a positive number of pixels, got {size}")
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = images[..., top:top + side, left:left + side]
    if side == size:
        return square.contiguous()
    out = [F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < side).round().clamp(0, 255).to(torch.uint8)
           for chunk in square.split(batch)]
    return torch.cat(out) if out else images.new_empty((0, images.shape[1], size, size))


def resize_splits(splits: Splits, size: int | None) -> Splits:
    """`splits` with every image resized to size x size (unchanged when size is None or already so)."""
    sets = [s for s in (splits.train, splits.test) if s is not None]
    if size is None or all(s.images.shape[-2:] == (size, size) for s in sets):
        return splits

    def fit(s: ImageSet | None) -> ImageSet | None:
        return None if s is None else dataclasses.replace(s, images=resize_square(s.images, size))

    h, w = splits.train.images.shape[-2:]
    note = f"{splits.name} resized from {h}x{w} to {size}x{size}"
    return dataclasses.replace(splits, train=fit(splits.train), test=fit(splits.test),
                               notice="; ".join(n for n in (splits.notice, note) if n))
