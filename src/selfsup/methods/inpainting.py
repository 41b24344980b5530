"""Context Encoders: feature learning by inpainting (Pathak et al., CVPR 2016), as in pathak22/context-encoder.

Official code read: train.lua and README.md (the training command: overlapPred=4 wtl2=0.999).

A region of each view is erased; the backbone encodes the rest and a pixel head reconstructs the region.
Facts taken from the paper and the official code:
  - the centre region is the central square of half the side (a quarter of the area: 64 of 128 px);
  - the erased pixels are filled with the data's mean (train.lua fills each channel with ImageNet's mean
    117/104/123): 0 in normalised units here;
  - the reconstruction loss is an L2 on the predicted region; the region's border of `overlapPred` = 4 of
    128 px stays visible to the encoder and its error weighs 10x (`overlapL2Weight`);
  - the joint loss is 0.999 x L2 + 0.001 x adversarial (README: wtl2=0.999), the adversary a DCGAN
    discriminator trained on real against reconstructed regions (binary cross-entropy).

Choices of ours, and why:
  - The encoder is the backbone (a ViT or a ResNet), the decoder SimMIM's one-layer `PixelHead` on its dense
    features instead of the paper's AlexNet encoder, 4000-d bottleneck and up-convolutions: what is
    evaluated is the backbone, and a light decoder leaves the work to it. The head predicts the whole view;
    the loss reads the region only.
  - `mask: region` (the default) is the paper's random region (Sec. 3.3), with which it learns its features:
    train_random.lua thresholds a smooth random field (uniform noise on a grid 0.06 of the pattern's side,
    bicubic-upsampled) at density 0.25 and takes windows whose masked area is 20-30%. Here each image gets
    its own field, 8 noise cells across the view (0.06 x 128 px, the code's crop), thresholded at its own
    25% quantile, so every region covers exactly a quarter of the view; the code draws one window for the
    whole batch.
  - `mask: random` erases one rectangle per image of a quarter of the area (aspect 1/2 to 2, anywhere in the
    view), close to the paper's random blocks.
  - The discriminator (built only when `adversarial` > 0) sees the whole view with the prediction pasted in
    the region, against the real view, as the code's conditional variant (conditionAdv) sees context and
    prediction; it has no BatchNorm (DCGAN's has), whose statistics would mix real and fake batches.
  - One optimiser step trains both players: the loss is (1 - a) L2 + a G + D, where D is the discriminator's
    loss on the real view and the detached reconstruction, and G the non-saturating generator loss computed
    through the discriminator with detached parameters (torch.func.functional_call). So D's gradient reaches
    the discriminator only and G's the encoder and head only. The code trains the context encoder at 10x
    the discriminator's lr (2e-3 vs 2e-4); here both share the engine's lr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import Method, one_view
from selfsup.methods.dense import PixelHead, dense_features, feature_stride
from selfsup.methods.recipe import optim
from selfsup.options import opt

MASKS = ("region", "center", "random")
REGION_CELLS = 8  # noise cells across the view: train_random.lua's res 0.06 x its 128-px crops
REGION_DENSITY = 0.25  # share of the view a region covers (train_random.lua density)


@dataclass
class InpaintingConfig:
    mask: str = opt("region", "Region to inpaint: region (the paper's random region: smooth random shapes "
                    "covering a quarter of the view, different per image; train_random.lua), center (the central "
                    "square of half the side, the paper's inpainting figures, the same region every time) or "
                    "random (one rectangle of a quarter of the area per image, anywhere). The paper finds "
                    "features learnt with the centre region latch onto its fixed boundary, and learns its "
                    "features with random regions (Sec. 3.3).", paper="region", choices=MASKS)
    overlap: float = opt(4 / 128, "Width of the region's border that stays visible but is still reconstructed, "
                         "as a fraction of the view's side (the paper's 4 of 128 px; 1 px on 28-px views); 0 "
                         "erases and reconstructs the same region.", paper=4 / 128, low=0, below=0.25)
    overlap_weight: float = opt(10.0, "Weight of the border's reconstruction error against the erased "
                                "region's (1): it makes the prediction continue its context.", paper=10.0,
                                low=0)
    adversarial: float = opt(0.0, "Weight a of the adversarial term (the reconstruction weighs 1 - a); 0 trains "
                             "no discriminator (cheaper, one player to train). The paper's 0.001 makes the inpainted "
                             "pixels sharp where L2 alone blurs them.", paper=0.001,
                             low=0, below=1)
    disc_width: int = opt(64, "Channels of the discriminator's first layer (doubled at each of its 3 layers).",
                          paper=64, low=1)


# pathak22/context-encoder train.lua: Adam lr 2e-4, beta1 0.5, batch 64, no weight decay, a constant lr over
# niter epochs (25 by default, 500 in the README's command); 2e-4 x 256/64 per 256 images. Ours is AdamW
# (without weight decay, Adam) with the paper's betas (0.5, 0.999) and a cosine schedule. Views: random crops
# and flips, no colour changes.
RECIPES = {"any": {"optim": optim("adamw", 2e-4 * 256 / 64, 0.0, 0, betas=(0.5, 0.999)),
                   "views": one_view((0.4, 1.0))}}


def center_mask(batch: int, size: int, device: torch.device | None = None) -> torch.Tensor:
    """(batch, 1, size, size) bool: the central square of side size // 2 (a quarter of the area if even)."""
    side = size // 2
    start = (size - side) // 2
    inside = (torch.arange(size, device=device) >= start) & (torch.arange(size, device=device) < start + side)
    return (inside[:, None] & inside[None, :]).expand(batch, 1, size, size)


def random_masks(batch: int, size: int, device: torch.device | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, 1, size, size) bool: one rectangle per image of about a quarter of the area, aspect ratio
    log-uniform in [1/2, 2], placed uniformly inside the image."""
    u = torch.rand(batch, 3, generator=generator).to(device)  # aspect, top, left
    ratio = torch.exp((u[:, 0] * 2 - 1) * math.log(2))
    h = (size / 2 * ratio.sqrt()).round().clamp(1, size)
    w = (size / 2 / ratio.sqrt()).round().clamp(1, size)
    top, left = (u[:, 1] * (size - h + 1)).floor(), (u[:, 2] * (size - w + 1)).floor()
    pos = torch.arange(size, device=device)
    rows = (pos >= top[:, None]) & (pos < (top + h)[:, None])  # (batch, size)
    cols = (pos >= left[:, None]) & (pos < (left + w)[:, None])
    return (rows[:, :, None] & cols[:, None, :]).unsqueeze(1)


def region_masks(batch: int, size: int, device: torch.device | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, 1, size, size) bool: Pathak et al.'s random region per image, the REGION_DENSITY share of the
    lowest values of a smooth random field (uniform noise on a REGION_CELLS grid, bicubic-upsampled)."""
    noise = torch.rand(batch, 1, REGION_CELLS, REGION_CELLS, generator=generator).to(device)
    field = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False).flatten(1)  # (B, S*S)
    k = max(1, round(REGION_DENSITY * size * size))
    threshold = field.kthvalue(k, dim=1, keepdim=True).values  # (B, 1): each image's own quantile
    return (field <= threshold).view(batch, 1, size, size)


def erode(mask: torch.Tensor, width: int) -> torch.Tensor:
    """(B, 1, H, W) bool -> the mask without its inner border of `width` px (the image's edge is no border)."""
    if width <= 0:
        return mask
    outside = F.max_pool2d((~mask).float(), 2 * width + 1, stride=1, padding=width)
    return mask & (outside == 0)


def region_weights(mask: torch.Tensor, hole: torch.Tensor, border_weight: float) -> torch.Tensor:
    """(B, 1, H, W) float: 1 in the erased hole, `border_weight` on the visible border of the region, 0 outside."""
    return hole.float() + (mask & ~hole).float() * border_weight


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted L2 over the region: pred, target (B, C, H, W), weights (B, 1, H, W) zero outside the region ->
    sum of w (pred - target)^2 over the region's pixels and channels, divided by their number (train.lua's
    MSE on the predicted region, with its gradient weighted by wtl2Matrix)."""
    n = (weights > 0).sum() * pred.shape[1]
    return (weights * (pred.float() - target.float()) ** 2).sum() / n.clamp_min(1)


class Discriminator(nn.Sequential):
    """(B, C, H, W) -> (B,) logits: 3 strided 4x4 convolutions with LeakyReLU 0.2 (DCGAN's, no BatchNorm),
    averaged over space, then a linear layer."""

    def __init__(self, channels: int, width: int) -> None:
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv2d(channels if i == 0 else width * 2 ** (i - 1), width * 2 ** i, 4, 2, 1),
                       nn.LeakyReLU(0.2)]
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width * 4, 1), nn.Flatten(0))


def adversarial_losses(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(discriminator loss, generator loss). The first sees the fake detached, so it trains `disc` only; the
    second goes through `disc` with detached parameters, so it trains the generator only."""
    ones, zeros = real.new_ones(len(real)), real.new_zeros(len(real))
    d_loss = (F.binary_cross_entropy_with_logits(disc(real).float(), ones)
              + F.binary_cross_entropy_with_logits(disc(fake.detach()).float(), zeros))
    frozen = {k: v.detach() for k, v in disc.named_parameters()}
    g_loss = F.binary_cross_entropy_with_logits(functional_call(disc, frozen, (fake,)).float(), ones)
    return d_loss, g_loss


class Inpainting(Method):
    name = "inpainting"
    config_class = InpaintingConfig
    recipes = RECIPES
    n_views = 1
    pooled_only = False

    def __init__(self, backbone: nn.Module, cfg: InpaintingConfig, n_global: int = 1) -> None:
        super().__init__(backbone, cfg, n_global)
        channels = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d)).in_channels
        self.head = PixelHead(backbone.embed_dim, channels, feature_stride(backbone, 64))
        self.disc = Discriminator(channels, cfg.disc_width) if cfg.adversarial > 0 else None

    def masks(self, view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) -> the region to reconstruct and the hole erased in it (its visible border removed),
        both (B, 1, S, S) bool."""
        B, S = view.shape[0], view.shape[-1]
        draw = {"region": region_masks, "center": center_mask, "random": random_masks}[self.cfg.mask]
        mask = draw(B, S, view.device)
        return mask, erode(mask, round(self.cfg.overlap * S))

    def inpaint(self, view: torch.Tensor, hole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The view with the hole at the mean (0) -> the backbone's dense features and the predicted view."""
        feats = dense_features(self.backbone, view.masked_fill(hole, 0.0))  # (B, D, S/s, S/s)
        pred = self.head(feats)  # (B, C, S, S), more where a ResNet's map is rounded up: the overhang is cropped
        return feats, pred[..., :view.shape[-2], :view.shape[-1]]

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        view = views[0]
        mask, hole = self.masks(view)
        feats, pred = self.inpaint(view, hole)
        rec = reconstruction_loss(pred, view, region_weights(mask, hole, self.cfg.overlap_weight))
        logs = {"rec": rec} if diagnostics else {}
        loss = rec
        if self.disc is not None:
            a = self.cfg.adversarial
            d_loss, g_loss = adversarial_losses(self.disc, view, torch.where(mask, pred.to(view.dtype), view))
            loss = (1 - a) * rec + a * g_loss + d_loss
            logs.update({"adv_g": g_loss, "adv_d": d_loss} if diagnostics else {})
        if not diagnostics:
            return loss, {}
        return loss, {**collapse_logs(feats.mean((2, 3))), **{k: float(v.detach()) for k, v in logs.items()}}

    @torch.no_grad()
    def reconstruct(self, view: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised views (B, C, S, S) -> {"masked": the input with its hole at the mean, "reconstruction":
        the input with the prediction pasted in the hole, "original": the view}, each (B, C, S, S). In eval
        mode (a ResNet's running statistics are used and left unchanged)."""
        was = self.training
        self.eval()
        try:
            _, hole = self.masks(view)
            _, pred = self.inpaint(view, hole)
        finally:
            self.train(was)
        return {"masked": view.masked_fill(hole, 0.0), "reconstruction": torch.where(hole, pred.to(view.dtype), view),
                "original": view}
