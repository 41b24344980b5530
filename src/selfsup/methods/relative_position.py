"""Relative position of two patches: context prediction (Doersch, Gupta & Efros, ICCV 2015).

Facts from the paper and its code, cdoersch/deepcontext (train.py, Caffe).
A 3x3 grid of cells is laid on the view; the centre patch and one of its 8 neighbours, chosen uniformly per
image (paper Sec. 3; the code pairs every two adjacent patches of a grid over the whole image), are cropped,
and a network predicts where the neighbour lies: label 0..7 in reading order (0 top-left, 1 top, 2 top-right,
3 left, 4 right, 5 bottom-left, 6 bottom, 7 bottom-right: train.py pos2lbl, 1-based there), i.e. cell
label + (label >= 4) of the row-major grid. Against trivial solutions the patches are apart by a gap of half
a patch (train.py: patch_sz 96, gap 48) and each is jittered by up to 7 px per axis (noise = 7; kept inside
its cell here, methods/grid_crops.py). Both patches go through the shared backbone (one batched forward of 2B
patches); as the code's late-fusion network, each patch's features pass a shared fc6 (4096), the two are
concatenated (first patch first) and fc7, fc8 (4096) and fc9 classify the 8 positions.
Chromatic aberration lets a network locate a patch in the lens's field from its colour fringes alone; the
paper's guard is colour dropping (Sec. 3.1): keep one random channel per patch and replace the other two by
Gaussian noise of 1/100 of that channel's standard deviation (here 0.01 in the views' normalised units,
around the channel's mean; the code draws uniform noise of +-0.5 grey levels). `color` also offers grayscale
patches or no guard; 1-channel data needs none. The code's other guards are left out: downsampling a third
of the patches to as few as 100 pixels and back, and scaling each patch to unit RMS.
Small images: 16-px views give 5-px cells with 3-px patches 2 px apart, 28-px views 9-px cells with 6-px
patches 3 px apart, both without jitter (7/96 of a patch rounds to 0 below 7-px patches, i.e. 32-px views);
for a ViT the patches are resized to a multiple of its patch size, one patch at least (fit_to_patches).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import Method, one_view
from selfsup.methods.grid_crops import GridGeometry, corners, crop, fit_to_patches, sample_offsets
from selfsup.methods.recipe import adamw_for_vit, optim
from selfsup.models.heads import mlp
from selfsup.options import opt

N_POSITIONS = 8
CENTRE = 4  # the centre cell of the row-major 3x3 grid
NOISE_STD = 0.01  # of the dropped channels, in normalised units (1/100 of the channel's std)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights of R, G, B


@dataclass
class RelativePositionConfig:
    gap: float = opt(0.5, "Gap between neighbouring patches, as a fraction of the patch side: patch = cell / "
                     "(1 + gap) (the paper's 48-px gaps between 96-px patches). Without a gap the network "
                     "matches edges across the boundary instead of learning what objects look like.",
                     paper=0.5, low=0)
    jitter: float = opt(0.073, "Largest random shift of each patch per axis, as a fraction of its side (the "
                        "paper's 7 px of 96), kept inside its cell; rounds to 0 for patches under 7 px.",
                        paper=0.073, low=0)
    hidden_dim: int = opt(1024, "Width of the fc layers (fc6 per patch, fc7 and fc8 on the pair). The CPU "
                          "default is smaller than the paper's 4096.", paper=4096, low=1)
    color: str = opt("drop", "Guard against chromatic aberration on RGB data: drop (the paper's: keep one "
                     "random channel per patch, Gaussian noise in the others), gray (grayscale patches) or "
                     "keep (none). Ignored for 1-channel data.", paper="drop", choices=("drop", "gray", "keep"))


def drop_colors(patches: torch.Tensor) -> torch.Tensor:
    """Normalised patches (B, n, C, h, w): one random channel per patch kept, the others N(0, NOISE_STD^2)."""
    b, n, c = patches.shape[:3]
    kept = torch.randint(0, c, (b, n, 1, 1, 1), device=patches.device)
    noise = torch.randn(patches.shape, device=patches.device, dtype=patches.dtype) * NOISE_STD
    keep = kept == torch.arange(c, device=patches.device).view(c, 1, 1)  # (B, n, C, 1, 1)
    return torch.where(keep, patches, noise)


# The paper trains an AlexNet-like pair network (Caffe) and gives no ResNet recipe: ResNets take the
# ResNet-50 pretext recipe of Goyal et al. (2019) (facebookresearch/vissl jigsaw_8gpu_resnet.yaml: SGD
# momentum 0.9, lr 0.1 at batch 256, weight decay 1e-4, 5 warm-up epochs; a cosine here).
# Views: the code lays its grid at a random place in images resized to 150K-450K pixels (a 3x3 grid of
# 432^2 px covers 40-100% of them): crops of 0.4-1 of the area; no colour augmentation (colour dropping).
SGD = optim("sgd", 0.1, 1e-4, 5)
VIEWS = one_view((0.4, 1.0))
RECIPES = {"resnet": {"optim": SGD, "views": VIEWS}, "vit": {"optim": adamw_for_vit(SGD), "views": VIEWS}}


class RelativePosition(Method):
    name = "relative-position"
    config_class = RelativePositionConfig
    recipes = RECIPES
    n_views = 1

    def __init__(self, backbone: nn.Module, cfg: RelativePositionConfig, n_global: int = 1) -> None:
        super().__init__(backbone, cfg, n_global)
        self.n_classes = N_POSITIONS
        self.fc6 = nn.Sequential(nn.Linear(backbone.embed_dim, cfg.hidden_dim), nn.ReLU())
        self.classifier = mlp(2 * cfg.hidden_dim, cfg.hidden_dim, N_POSITIONS, 3, act="relu")  # fc7, fc8, fc9

    def geometry(self, size: int) -> GridGeometry:
        return GridGeometry.of(size, self.cfg.gap, self.cfg.jitter)

    def draw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The random choices for views x (B, C, S, S): neighbour labels (B,), offsets (B, 2, 2) of the
        centre patch and the neighbour in their cells."""
        labels = torch.randint(0, N_POSITIONS, (x.shape[0],), device=x.device)
        return labels, sample_offsets(self.geometry(x.shape[-1]), x.shape[0], 2, x.device)

    def pairs(self, x: torch.Tensor, labels: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Views (B, C, S, S) -> (centre, neighbour) patches (B, 2, C, p, p), the neighbour in cell
        labels + (labels >= 4)."""
        cells = torch.stack([torch.full_like(labels, CENTRE), labels + (labels >= CENTRE).long()], dim=1)  # (B, 2)
        g = self.geometry(x.shape[-1])
        return crop(x, corners(g, cells, offsets), g.tile)

    def guard_colors(self, patches: torch.Tensor) -> torch.Tensor:
        """The `color` option on normalised RGB patches (B, n, 3, p, p); other data unchanged."""
        if patches.shape[2] != 3 or self.cfg.color == "keep":
            return patches
        if self.cfg.color == "drop":
            return drop_colors(patches)
        luma = torch.tensor(LUMA, device=patches.device).view(3, 1, 1)
        gray = (self.pixels(patches) * luma).sum(dim=2, keepdim=True)  # (B, n, 1, p, p) in [0, 1] units
        return (gray - self.view_mean) / self.view_std  # replicated to the 3 channels, normalised again

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        x = views[0]
        labels, offsets = self.draw(x)
        patches = self.guard_colors(self.pairs(x, labels, offsets)).flatten(0, 1)  # (2B, C, p, p)
        feats = self.backbone(fit_to_patches(patches, getattr(self.backbone, "patch_size", 1)))  # (2B, D)
        logits = self.classifier(self.fc6(feats).view(x.shape[0], -1))  # (B, 8)
        loss = F.cross_entropy(logits.float(), labels)
        if not diagnostics:
            return loss, {}
        return loss, {"acc": float((logits.argmax(-1) == labels).float().mean()), **collapse_logs(feats)}
