"""Converting images between grayscale and RGB, the one way every part of selfsup does it.

Grayscale becomes RGB by repeating the channel; RGB becomes grayscale by ITU-R BT.601 luma
(0.299 R + 0.587 G + 0.114 B, PIL's `convert("L")`). Evaluation adapts data to a backbone with it
(eval/adapt.py), and colorization feeds its backbone the same luma (methods/colorization.py).
"""

from __future__ import annotations

import torch

from selfsup.data.dataset import DataError

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


def to_channels(images: torch.Tensor, channels: int, batch: int = 4096) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, channels, H, W) uint8: 1 -> 3 by repetition, 3 -> 1 by luminance."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor(LUMA).view(1, 3, 1, 1)
        out = [(chunk.float() * w).sum(dim=1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
               for chunk in images.split(batch)]  # (b, 1, H, W) each
        return torch.cat(out) if out else images.new_empty((0, 1, *images.shape[-2:]))
    raise DataError(f"cannot convert {c}-channel images to the backbone's {channels} channels (only grayscale "
                    "<-> RGB is supported): evaluate on grayscale or RGB data")
