"""RotNet: predicting image rotations (Gidaris, Singh & Komodakis, ICLR 2018), as in gidariss/FeatureLearningRotNet.

Each view is rotated by 0, 90, 180 and 270 degrees (dataloader.py rotate_img: counter-clockwise, as
torch.rot90), the four copies of every image go through the backbone in one batch of 4B (the official
collate function stacks them image by image), and a classifier predicts which rotation each copy had:
4-way cross-entropy, label k for k quarter turns. Recognising the canonical orientation needs the objects'
identity, pose and layout, so the features that solve it transfer (paper Sec. 2.2: the four rotations, unlike
others such as multiples of 45 degrees, leave no low-level artefacts of interpolation).
The paper's classifier is its network's last layer (NIN: global pooling then a linear layer; AlexNet: the
fc layers); here a linear layer on the backbone features, or a small MLP with `head_layers`.
The recipe is the CIFAR-10 NIN one (config/CIFAR10_RotNet_NIN4blocks.py: SGD lr 0.1 at batch 128, momentum
0.9, weight decay 5e-4 on every parameter), with a cosine schedule instead of its steps and no Nesterov
momentum, and so are its views: one crop per image, RandomCrop(32, padding=4) and flips, no resizing and no
colour jitter (dataloader.py for cifar10, which refuses random_sized_crop; ImageNet's RandomSizedCrop is for
its AlexNet runs): `--views.crop padded`, the image padded by 1/8 of the crop's side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import Method, one_view
from selfsup.methods.recipe import adamw_for_vit, optim
from selfsup.models.heads import mlp
from selfsup.options import opt

N_ROTATIONS = 4


@dataclass
class RotationConfig:
    head_layers: int = opt(1, "Linear layers of the rotation classifier: 1 is a linear layer on the backbone "
                           "features (the features then carry the task themselves, which usually transfers "
                           "best); 2 or more add ReLU hidden layers, as the paper's AlexNet fc layers.",
                           paper=1, low=1)
    head_hidden_dim: int = opt(512, "Width of the classifier's hidden layers (with head_layers > 1).", low=1)


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Square views (B, C, S, S) -> their four rotations (4B, C, S, S), image by image, and labels (4B,):
    copy 4i + k is image i turned k quarter turns counter-clockwise (torch.rot90, dims (-2, -1))."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation needs square views, got {x.shape[-2]}x{x.shape[-1]}")
    turned = torch.stack([torch.rot90(x, k, dims=(-2, -1)) for k in range(N_ROTATIONS)], dim=1)  # (B, 4, C, S, S)
    labels = torch.arange(N_ROTATIONS, device=x.device).repeat(x.shape[0])  # (4B,) 0, 1, 2, 3, 0, ...
    return turned.flatten(0, 1), labels


# gidariss/FeatureLearningRotNet config/CIFAR10_RotNet_NIN4blocks.py: SGD over every parameter, lr 0.1 at
# batch 128 (0.2 at 256), momentum 0.9, weight decay 5e-4, Nesterov, no warm-up, steps at epochs 60/120/160;
# its views (random_sized_crop False; dataloader.py, cifar10 train split): RandomCrop(32, padding=4) and
# RandomHorizontalFlip, no colour augmentation. The whole image is kept (global_scale 1: no resized crop).
SGD = optim("sgd", 0.2, 5e-4, 0, decay_norm_bias=True)
VIEWS = one_view((1.0, 1.0), crop="padded")
RECIPES = {"resnet": {"optim": SGD, "views": VIEWS}, "vit": {"optim": adamw_for_vit(SGD), "views": VIEWS}}


class Rotation(Method):
    name = "rotation"
    config_class = RotationConfig
    recipes = RECIPES
    n_views = 1

    def __init__(self, backbone: nn.Module, cfg: RotationConfig, n_global: int = 1) -> None:
        super().__init__(backbone, cfg, n_global)
        self.head = mlp(backbone.embed_dim, cfg.head_hidden_dim, N_ROTATIONS, cfg.head_layers, act="relu")

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        x, labels = rotations(views[0])  # (4B, C, S, S), (4B,)
        feats = self.backbone(x)  # (4B, D): one forward, BatchNorm statistics over all rotations
        logits = self.head(feats)  # (4B, 4)
        loss = F.cross_entropy(logits.float(), labels)
        if not diagnostics:
            return loss, {}
        return loss, {"acc": float((logits.argmax(-1) == labels).float().mean()), **collapse_logs(feats)}
