"""ResNet-18 / ResNet-50 backbones with torchvision's parameter names (no fc head).

Names match torchvision (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, ...), so torchvision and
solo-learn checkpoints load with `load_state_dict(..., strict=False)` once their `fc.*` entries are dropped.
Bottlenecks put the stride on the 3x3 conv (ResNet v1.5, as torchvision does).
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.models.micro_batches import micro_batched

# depth -> (block kind, blocks per stage)
RESNET_LAYOUTS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)


def shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    """Projection shortcut (1x1 conv + BN) when the shape changes, else identity (None)."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """Two 3x3 convs; used by ResNet-18/34."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(c_in, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(c_in, width, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, width, H/s, W/s)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4; used by ResNet-50/101/152."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = conv1x1(c_in, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, c_out)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(c_in, c_out, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, 4 * width, H/s, W/s)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """ResNet backbone: (B, in_chans, H, W) -> (B, embed_dim) globally average-pooled features.

    `small_stem=True` swaps the 7x7/2 conv + 3x3/2 max-pool for a 3x3/1 conv and no pool (SimCLR's CIFAR
    variant, for 28-32 px images). `width` is the stem's and first stage's channels (64 in the paper); each
    later stage doubles it, so compute grows with its square. `zero_init_residual` zeroes the last BN scale
    of each block, so every residual branch starts as the identity (Goyal et al., 2017).
    """

    def __init__(self, depth: int = 18, in_chans: int = 3, small_stem: bool = False, width: int = 64,
                 zero_init_residual: bool = True):
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"unsupported ResNet depth {depth}: choose one of {sorted(RESNET_LAYOUTS)}")
        kind, layers = RESNET_LAYOUTS[depth]
        block = BLOCKS[kind]
        self.depth, self.small_stem = depth, small_stem
        if small_stem:
            self.conv1 = nn.Conv2d(in_chans, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        c_in = width
        for i, n_blocks in enumerate(layers):
            stage, c_in = self._make_stage(block, c_in, width * 2**i, n_blocks, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.embed_dim = self.feature_dim = c_in
        self.micro_batches = 1  # parts of the batch per training forward (--optim.micro-batches)
        self._init_weights(zero_init_residual)

    @staticmethod
    def _make_stage(block: type[BasicBlock] | type[Bottleneck], c_in: int, width: int, n_blocks: int,
                    stride: int) -> tuple[nn.Sequential, int]:
        """`n_blocks` blocks, the first one strided; returns the stage and its output channels."""
        blocks = [block(c_in, width, stride)]
        c_out = width * block.expansion
        blocks += [block(c_out, width) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks), c_out

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, embed_dim, h, w)
        """The last feature map; in training with `micro_batches` > 1 computed on parts of the batch
        (models/micro_batches.py: each part's BatchNorm statistics are its own)."""
        return micro_batched(self._stages, x, self.micro_batches, self)[0]

    def _stages(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return (self.layer4(self.layer3(self.layer2(self.layer1(x)))),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, embed_dim)
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)


def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]), embed_dim 8 x width (512)."""
    return ResNet(depth=18, **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (Bottleneck, [3, 4, 6, 3]), embed_dim 32 x width (2048)."""
    return ResNet(depth=50, **kwargs)


__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50"]
