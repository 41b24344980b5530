"""Dense features of either backbone family and the one-layer pixel head of SimMIM.

Methods that predict per pixel (SimMIM, colorization, inpainting) read the backbone's last feature map:
a ViT's normalised patch tokens laid out on their grid, a ResNet's last stage. `PixelHead` is SimMIM's
decoder (microsoft/SimMIM models/simmim.py): a 1x1 convolution to stride^2 x out channels, then a pixel
shuffle back to the input resolution, so each feature cell predicts its own stride x stride pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.models.vit import VisionTransformer


def dense_features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, D, H/s, W/s): the last block's patch tokens (ViT) or last stage (ResNet)."""
    if isinstance(backbone, VisionTransformer):
        return backbone.forward_patch_grid(x)  # (B, D, h, w): CLS and registers dropped
    if hasattr(backbone, "forward_features"):
        return backbone.forward_features(x)
    raise TypeError(f"{type(backbone).__name__} has no feature map: use a ViT or a ResNet backbone")


def tokens_to_map(tokens: torch.Tensor, h: int) -> torch.Tensor:
    """(B, h*w, D) patch tokens in raster order -> (B, D, h, w)."""
    B, N, D = tokens.shape
    return tokens.transpose(1, 2).reshape(B, D, h, N // h)


def feature_stride(backbone: nn.Module, size: int) -> int:
    """Input pixels per feature cell along a side for `size`-px inputs (the patch size of a ViT; 8 or 32 for
    a ResNet with the small or the ImageNet stem). Measured on a tiny input for ResNets."""
    if isinstance(backbone, VisionTransformer):
        return backbone.patch_size
    param = next(backbone.parameters())
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        side = backbone.forward_features(param.new_zeros(1, _in_chans(backbone), size, size)).shape[-1]
        backbone.train(was)
    if size % side:
        raise ValueError(f"{size}-px inputs give a {side}-cell feature map that does not tile them: use a "
                         "crop size that is a multiple of the backbone's stride")
    return size // side


def _in_chans(backbone: nn.Module) -> int:
    first = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


class PixelHead(nn.Module):
    """(B, D, h, w) features -> (B, out_channels, h*stride, w*stride): 1x1 conv + pixel shuffle."""

    def __init__(self, in_dim: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, stride * stride * out_channels, kernel_size=1)
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))
