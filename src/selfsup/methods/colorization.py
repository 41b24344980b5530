"""Colorful Image Colorization (Zhang, Isola & Efros, ECCV 2016), as in richzhang/colorization.

Official code read: models/colorization_train_val_v2.prototxt, resources/caffe_traininglayers.py and
train/solver.prototxt.

The backbone sees the lightness of an RGB view and predicts, per output pixel, a distribution over Q
quantised ab colours (CIE Lab, bins 10 apart). Facts taken from the paper and the official code:
  - target: each pixel's ab soft-encoded onto its 5 nearest bins with a Gaussian kernel of sigma 5 (the
    paper's 5; the code's NNEncLayer takes 10 neighbours, sigma 5);
  - loss (eq. 2): multinomial cross-entropy weighted per pixel by v(Z) = w of the pixel's nearest bin,
    w ∝ ((1 - λ) p̃ + λ / Q)^-1, λ = 0.5, rescaled so that E_p̃[w] = 1 (eq. 4; PriorFactor: alpha 1,
    gamma 0.5, the uniform part over bins of non-zero prior), p̃ the training colours' bin distribution
    smoothed by a Gaussian of sigma 5 in ab space;
  - output at 1/4 of the input resolution: the code subsamples ab one pixel in 4 (`data_ab_ss`, stride 4;
    an average pooling is the commented-out alternative), which we take (4x4 mean of ab, antialiased).
    When the backbone's stride is not a multiple of 4 (a ViT with 7-px patches) the head predicts at full
    resolution instead; `PixelHead` upsamples the dense features by stride/4 (or stride). Where the side is
    not a multiple of a ResNet's stride its last map covers more than the view: the overhang is cropped.

Choices of ours, and why:
  - The backbone reads ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B of the sRGB values), not Lab's L.
    L is a cube root of linear luminance, luma a weighted sum of gamma-encoded values: both are monotone
    lightness measures that differ by the sRGB gamma curve. Luma is what evaluation feeds a 1-channel
    backbone on RGB data (eval/adapt.py), so pre-training and evaluation see the same input; it is
    normalised with the luma's mean/std over the training sample, as the saved backbone records.
  - The bins are computed, not loaded: the 10-spaced ab cells occupied by the sRGB cube (64^3 colours,
    the same set as all 256^3 8-bit colours) are 261 bins; the paper's file pts_in_hull.npy has 313 (its
    construction is not in the code). `bins: data` keeps only the bins the training sample occupies.
  - No grayscale-image mask: the code zeroes the loss of images whose ab never exceeds 5 (NonGrayMaskLayer),
    ImageNet's few grayscale photos; cluttered and CIFAR have none (a grey pixel gets the low grey weight).
The prior (counted on a seeded sample of at most 2^24 training pixels), the class weights and the luma
statistics are buffers computed by `prepare_data` from the training images on every run, so they are not
saved (persistent=False).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_lab
from torch import nn

from selfsup.data.channels import LUMA, to_channels
from selfsup.data.views import channel_stats
from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import Method, one_view
from selfsup.methods.dense import PixelHead, dense_features, feature_stride
from selfsup.methods.recipe import optim
from selfsup.options import opt
from selfsup.validate import ConfigError

GRID = 10.0  # ab bin spacing (the paper's grid size 10)
SIGMA = 5.0  # Gaussian of the soft-encoding and of the prior's smoothing
NEIGHBOURS = 5  # bins each pixel is soft-encoded onto
OUTPUT_STRIDE = 4  # the paper predicts at 1/4 of the input resolution
PRIOR_PIXELS = 2 ** 24  # pixels of the training sample the prior is counted on (seeded subsample)


@dataclass
class ColorizationConfig:
    bins: str = opt("gamut", "The ab classes: gamut (the 261 bins of the sRGB gamut, the paper's definition) or "
                    "data (only the bins the training images occupy: fewer classes, none the data never "
                    "shows; suits data with few colours).", paper="gamut", choices=("gamut", "data"))
    rebalance: float = opt(0.5, "λ of the class rebalancing, mixing the colour prior with a uniform one before "
                           "inverting it: 0 weighs rare colours by 1/prior, 1 weighs all colours alike (the "
                           "paper's non-rebalanced variant gets greyish, desaturated colours).", paper=0.5,
                           low=0, high=1)


# richzhang/colorization train/solver.prototxt: Adam, base_lr 3e-5, momentum 0.9, momentum2 0.99, weight_decay
# 1e-3 (Caffe's L2, on biases too), batch 40 (train_val_v2.prototxt); lr 3e-5 x 256/40 per 256 images. Ours
# is AdamW with the paper's betas (0.9, 0.99) but decoupled weight decay, a cosine schedule instead of the
# steps x0.1 at 225k of 500k iterations. Views: random crops and mirroring only (crop_size 176, mirror); any
# colour change would change the target.
RECIPES = {"any": {"optim": optim("adamw", 3e-5 * 256 / 40, 1e-3, 0, decay_norm_bias=True,
                                     betas=(0.9, 0.99)),
                   "views": one_view((0.4, 1.0))}}


def rgb_to_ab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> (B, 2, H, W) the a and b of CIE Lab (D65), about -110..110."""
    return rgb_to_lab(rgb.clamp(0, 1).float())[:, 1:]


@functools.lru_cache(maxsize=1)
def _gamut_bins(points: int) -> torch.Tensor:
    t = torch.linspace(0, 1, points)
    cube = torch.stack(torch.meshgrid(t, t, t, indexing="ij")).reshape(1, 3, -1, 1)  # (1, 3, points^3, 1)
    ab = rgb_to_ab(cube)[0, :, :, 0].T  # (points^3, 2)
    return torch.unique(torch.round(ab / GRID), dim=0) * GRID  # (Q, 2), sorted by a then b


def gamut_bins(points: int = 64) -> torch.Tensor:
    """(Q, 2) centres of the GRID-spaced ab cells that sRGB colours occupy, from points^3 colours of the cube."""
    return _gamut_bins(points).clone()


def nearest_bins(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N, 2) ab -> (N,) index of the centre (Q, 2) nearest to the ab's GRID cell: the nearest centre
    whenever the cell is a bin; a look-up per cell, so that whole datasets are counted fast."""
    cells = torch.round(centres / GRID).long()  # (Q, 2)
    lo, hi = int(cells.min()) - 2, int(cells.max()) + 2
    grid = torch.arange(lo, hi + 1, device=ab.device, dtype=centres.dtype) * GRID
    grid = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)  # (G^2, 2)
    lut = torch.cdist(grid, centres).argmin(1)  # (G^2,)
    idx = (torch.round(ab / GRID).long() - lo).clamp(0, hi - lo)  # (N, 2)
    return lut[idx[:, 0] * (hi - lo + 1) + idx[:, 1]]


def bin_counts(images: torch.Tensor, centres: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """uint8 RGB images (N, 3, H, W) -> (Q,) how many of their pixels fall in each bin."""
    counts = torch.zeros(len(centres), dtype=torch.float64)
    for chunk in images.split(batch):
        ab = rgb_to_ab(chunk.float() / 255).permute(0, 2, 3, 1).reshape(-1, 2)  # (b*H*W, 2)
        counts += torch.bincount(nearest_bins(ab, centres), minlength=len(centres)).double()
    return counts


def smoothed_prior(counts: torch.Tensor, centres: torch.Tensor, active: torch.Tensor,
                   sigma: float = SIGMA) -> torch.Tensor:
    """(Q,) bin counts -> p̃ (Q,): each active bin's mass spread over the active bins by a Gaussian of `sigma`
    in ab space (mass-preserving, sums to 1); 0 on inactive bins, which receive no mass (the destination rows
    are masked) and give none (their counts are dropped)."""
    kernel = torch.exp(-torch.cdist(centres, centres).double() ** 2 / (2 * sigma ** 2)) * active[:, None]  # (Q, Q)
    spread = kernel / kernel.sum(0, keepdim=True).clamp_min(1e-12)  # column j: where bin j's mass goes
    p = spread @ (counts.double() * active)
    return (p / p.sum()).float()


def rebalance_weights(prior: torch.Tensor, active: torch.Tensor, lam: float) -> torch.Tensor:
    """w ∝ ((1 - λ) p̃ + λ / Q)^-1 over the Q active bins, scaled so that sum p̃ w = 1 (eq. 4); 0 if inactive."""
    uniform = active.float() / active.sum()
    w = torch.where(active, 1 / ((1 - lam) * prior + lam * uniform).clamp_min(1e-12), 0.0)
    return w / (prior * w).sum()


def soft_encode(ab: torch.Tensor, centres: torch.Tensor, active: torch.Tensor | None = None,
                k: int = NEIGHBOURS, sigma: float = SIGMA) -> torch.Tensor:
    """(N, 2) ab -> (N, Q) targets: Gaussian weights of the k nearest active bins, normalised to sum 1."""
    d = torch.cdist(ab.float(), centres.float(), compute_mode="donot_use_mm_for_euclid_dist")  # (N, Q)
    if active is not None:
        d = d.masked_fill(~active, float("inf"))
    dist, idx = d.topk(k, dim=1, largest=False)  # (N, k) each
    w = torch.softmax(-dist ** 2 / (2 * sigma ** 2), dim=1)  # exp(-d^2 / 2 sigma^2), normalised
    return torch.zeros_like(d).scatter_(1, idx, w)


def rebalanced_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Eq. 2 averaged over pixels: logits, target (N, Q), weight (N,) -> mean of -v(Z) sum_q Z_q log Ẑ_q."""
    return -(weight * (target * F.log_softmax(logits.float(), dim=1)).sum(1)).mean()


class Colorization(Method):
    name = "colorization"
    config_class = ColorizationConfig
    recipes = RECIPES
    n_views = 1
    pooled_only = False

    def __init__(self, backbone: nn.Module, cfg: ColorizationConfig, n_global: int = 1) -> None:
        super().__init__(backbone, cfg, n_global)
        self.register_buffer("bin_ab", gamut_bins(), persistent=False)  # (Q, 2)
        stride = feature_stride(backbone, 64)
        self.output_stride = OUTPUT_STRIDE if stride % OUTPUT_STRIDE == 0 else 1
        self.head = PixelHead(backbone.embed_dim, len(self.bin_ab), stride // self.output_stride)

    @classmethod
    def input_channels(cls, data_channels: int) -> int:
        """1: the lightness of RGB data; other data has no colour to predict."""
        if data_channels != 3:
            raise ConfigError(f"colorization predicts the colours of RGB images from their lightness, but the "
                              f"data (--data.name) has {data_channels}-channel images: use RGB data (cluttered, "
                              "a CIFAR folder or a folder of colour images) or another --method")
        return 1

    def prepare_data(self, sample: torch.Tensor, mean: list[float], std: list[float]) -> None:
        """The views' statistics, the luma's (as the saved backbone's: engine/pretrain.py), the bins kept,
        the smoothed colour prior p̃ and the class weights w, all from the uint8 RGB training images."""
        super().prepare_data(sample, mean, std)
        self.input_channels(sample.shape[1])
        luma_mean, luma_std = channel_stats(to_channels(sample, 1))
        self.register_buffer("luma_mean", torch.tensor(luma_mean).view(1, 1, 1, 1), persistent=False)
        self.register_buffer("luma_std", torch.tensor(luma_std).view(1, 1, 1, 1), persistent=False)
        counts = bin_counts(prior_sample(sample), self.bin_ab.cpu())
        active = counts > 0 if self.cfg.bins == "data" else torch.ones(len(counts), dtype=torch.bool)
        prior = smoothed_prior(counts, self.bin_ab.cpu(), active)
        weights = rebalance_weights(prior, active, self.cfg.rebalance)
        device = self.bin_ab.device
        self.register_buffer("bin_active", active.to(device), persistent=False)
        self.register_buffer("bin_prior", prior.to(device), persistent=False)
        self.register_buffer("bin_weight", weights.to(device), persistent=False)

    def lightness(self, rgb: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) normalised BT.601 luma, the backbone's input."""
        luma = (rgb * rgb.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return (luma - self.luma_mean) / self.luma_std

    def targets(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) RGB -> soft-encoded targets (B*h*w, Q) and pixel weights (B*h*w,) at the output size."""
        ab = F.avg_pool2d(rgb_to_ab(rgb), self.output_stride)  # (B, 2, h, w)
        target = soft_encode(ab.permute(0, 2, 3, 1).reshape(-1, 2), self.bin_ab, self.bin_active)
        return target, self.bin_weight[target.argmax(1)]

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        rgb = self.pixels(views[0]).clamp(0, 1)  # (B, 3, S, S)
        with torch.no_grad():
            target, weight = self.targets(rgb)
        feats = dense_features(self.backbone, self.lightness(rgb))  # (B, D, S/s, S/s)
        h, w = (side // self.output_stride for side in rgb.shape[-2:])
        logits = self.head(feats)[..., :h, :w]  # (B, Q, h, w); a ResNet's ceil-rounded map overhangs: cropped
        logits = logits.permute(0, 2, 3, 1).flatten(0, 2)  # (B*h*w, Q)
        logits = logits.float().masked_fill(~self.bin_active, -1e9)  # `bins: data`: never the unused bins
        loss = rebalanced_cross_entropy(logits, target, weight)
        if not diagnostics:
            return loss, {}
        with torch.no_grad():
            ce = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
            acc = (logits.argmax(1) == target.argmax(1)).float().mean()
        return loss, {**collapse_logs(feats.mean((2, 3))), "ce_unweighted": float(ce), "bin_acc": float(acc)}


def prior_sample(images: torch.Tensor, max_pixels: int = PRIOR_PIXELS, seed: int = 0) -> torch.Tensor:
    """At most `max_pixels` pixels' worth of the images (N, C, H, W), drawn uniformly by a seeded generator."""
    n = max(1, max_pixels // (images.shape[-1] * images.shape[-2]))
    if len(images) <= n:
        return images
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return images[pick.sort().values]
