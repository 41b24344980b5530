"""Bringing an evaluation dataset to the input a backbone was pre-trained on: its channel count and side.

Transfer evaluation (pre-train on Fashion-MNIST, evaluate on CIFAR-10, or the reverse) needs it, and so does
any protocol on data whose images differ from the pre-training crops. Grayscale becomes RGB by repeating
the channel; RGB becomes grayscale by ITU-R BT.601 luminance (0.299 R + 0.587 G + 0.114 B, PIL's
`convert("L")`); the side is changed with `resize_square` (centre square crop, then bilinear, antialiased
when shrinking). Other channel counts cannot be converted and raise a DataError.
"""

from __future__ import annotations

import dataclasses

from selfsup.data.channels import LUMA, to_channels
from selfsup.data.dataset import ImageSet, Splits
from selfsup.data.resize import resize_square


def adapt_set(images: ImageSet, channels: int, size: int) -> ImageSet:
    """The image set with `channels` channels and side `size` (labels and classes kept)."""
    x = to_channels(images.images, channels)
    if x.shape[-2:] != (size, size):
        x = resize_square(x, size)
    return dataclasses.replace(images, images=x)


def channel_change(have: int, channels: int) -> str:
    """The line that says how `have`-channel images are brought to `channels`."""
    how = "repeated" if have == 1 else "converted by luminance"
    return f"{have}-channel images {how} to {channels} channel{'s' if channels > 1 else ''}"


def adapt_splits(splits: Splits, channels: int, size: int) -> tuple[Splits, list[str]]:
    """Both splits brought to (channels, size, size), and one line per change made (empty if none); the
    splits' notice is left as the source wrote it."""
    sets = [s for s in (splits.train, splits.test) if s is not None]
    changes = [channel_change(c, channels) for c in sorted({s.channels for s in sets} - {channels})]
    for h, w in sorted({tuple(s.images.shape[-2:]) for s in sets} - {(size, size)}):
        changes.append(f"resized from {h}x{w} to {size}x{size}")
    if not changes:
        return splits, []
    test = None if splits.test is None else adapt_set(splits.test, channels, size)
    return dataclasses.replace(splits, train=adapt_set(splits.train, channels, size), test=test), changes


__all__ = ["LUMA", "adapt_set", "adapt_splits", "channel_change", "to_channels"]
