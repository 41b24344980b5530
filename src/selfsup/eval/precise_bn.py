"""Precise BatchNorm statistics: recompute the running mean/variance of every BatchNorm layer from
training images after training (Wu & Johnson, 2021, "Rethinking 'Batch' in BatchNorm", section 3).

The running averages kept during training (momentum 0.1) lag behind the weights, and after a short run
they still remember their initial values (0 / 1 for a network trained from scratch): a ResNet trained
for a dozen steps then predicts one class in eval mode although it fits the data in train mode. One
forward pass over some un-augmented training images, with equal-weight (cumulative) averaging, fixes that.
Models without BatchNorm (ViTs) are left untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                       batch_size: int = 256, max_images: int = 4096, device: str | torch.device = "cpu") -> int:
    """Reset and re-estimate BN running statistics from the first `max_images` uint8 images (N, C, H, W).

    Returns the number of BN layers updated (0: nothing to do). The model is left in eval mode; its
    weights are unchanged.
    """
    bns = [m for m in model.modules() if isinstance(m, BN_TYPES) and m.track_running_stats]
    if not bns:
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    try:
        n = min(len(images), max_images)
        for i in range(0, n, batch_size):
            if n - i >= 2 or i == 0:  # a trailing single image: BatchNorm cannot normalise one sample
                model(prepare(images[i:i + batch_size].to(device).float().div_(255)))
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        model.eval()
    return len(bns)


__all__ = ["recompute_bn_stats"]
