"""Batched multi-crop views made on the training device with kornia.

A batch of uint8 images (B, C, H, W) becomes `n_global` views at `global_size` followed by `n_local`
views at `local_size`, each a float tensor normalised with the dataset's mean/std. Every op samples its
parameters per image, so one call augments the whole batch without a Python loop over samples.
The colour jitter, blur and solarisation follow a named recipe (`--views.recipe`, see `VIEW_RECIPES`),
each as its official code makes it. Colour ops that make no sense for 1-channel data (saturation, hue,
grayscale) are left out for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import kornia.augmentation as K
import torch
from torch import nn

from selfsup.options import opt


class ViewRecipe(NamedTuple):
    jitter: tuple[float, float, float, float]  # brightness, contrast, saturation, hue strengths
    blur: tuple[float, float, float]  # blur probability on global view 1, global view 2, local views
    solarize: float  # solarisation probability on global view 2
    source: str


# Checked against the official codes (the probabilities of jitter 0.8, grayscale 0.2 and flip 0.5 are the
# same in all of them and are options of their own).
VIEW_RECIPES: dict[str, ViewRecipe] = {
    "dino": ViewRecipe((0.4, 0.4, 0.2, 0.1), (1.0, 0.1, 0.5), 0.2,
                       "facebookresearch/dino main_dino.py DataAugmentationDINO (lines 418-457)"),
    "byol": ViewRecipe((0.4, 0.4, 0.2, 0.1), (1.0, 0.1, 0.5), 0.2,
                       "BYOL paper Table 6 (T: blur 1.0, solarize 0; T': blur 0.1, solarize 0.2); "
                       "barlowtwins main.py Transform, vicreg augmentations.py, moco-v3 main_moco.py 262-283"),
    "simclr": ViewRecipe((0.8, 0.8, 0.8, 0.2), (0.5, 0.5, 0.5), 0.0,
                         "google-research/simclr data_util.py color_jitter strength 1 (lines 74-77), "
                         "batch_random_blur p=0.5 on both views; swav src/multicropdataset.py"),
    "mocov2": ViewRecipe((0.4, 0.4, 0.4, 0.1), (0.5, 0.5, 0.5), 0.0,
                         "facebookresearch/moco main_moco.py --aug-plus (lines 326-338); simsiam "
                         "main_simsiam.py 229-238"),
}


CROPS = ("resized", "padded")
RESAMPLE = ("bilinear", "bicubic")


@dataclass
class ViewsConfig:
    recipe: str = opt("dino", "Colour jitter, blur and solarisation as a paper makes them: dino and byol "
                      "(jitter 0.4/0.4/0.2/0.1; global view 1 always blurred, view 2 blurred with p 0.1 and "
                      "solarised with p 0.2; local views blurred with p 0.5), simclr (strength-1 jitter "
                      "0.8/0.8/0.8/0.2, blur p 0.5 on every view, no solarisation) or mocov2 (MoCo v2's "
                      "aug+: jitter 0.4/0.4/0.4/0.1, blur p 0.5 on every view, no solarisation). Each "
                      "method picks its paper's; the asymmetric dino/byol pair is the stronger for "
                      "non-contrastive methods.", paper="dino", choices=tuple(VIEW_RECIPES))
    global_size: int | None = opt(None, "Side of the global crops (teacher and student); default: the "
                                  "images' side. Must be a multiple of the ViT patch size.", paper=224,
                                  low=1)
    local_size: int | None = opt(None, "Side of the local crops (student only); default: 96/224 of the "
                                 "global side, rounded to a multiple of the patch size.", paper=96, low=1)
    n_global: int = opt(2, "Number of global crops: 2 or more for multi-crop methods, 2 for the other "
                        "joint-embedding methods, 1 for masked image modelling and the pretext tasks (each "
                        "method's recipe sets it).", paper=2, low=1)
    n_local: int = opt(6, "Number of local crops (dino, swav, simclr). More helps accuracy (the paper's "
                       "2x224+10x96 beats 2x224) but each costs a forward/backward: on a CPU budget 4 local "
                       "crops of 14 px halved SimCLR's images/s and lost 1.3 k-NN points at equal minutes "
                       "(docs/demo_sweep.md); 0 disables multi-crop.", paper=10,
                       low=0)
    global_scale: tuple[float, float] = opt((0.4, 1.0), "Area range of global crops. Widen to (0.14, 1) "
                                           "when there are no local crops.", paper=(0.4, 1.0),
                                           above=0, high=1, ordered=True)
    local_scale: tuple[float, float] = opt((0.05, 0.4), "Area range of local crops.", paper=(0.05, 0.4),
                                          above=0, high=1, ordered=True)
    crop: str = opt("resized", "How the global crops are cut: resized (RandomResizedCrop: --views.global-scale "
                    "of the area, aspect 3/4-4/3, resized to --views.global-size) or padded (the image padded "
                    "with black by 1/8 of --views.global-size per side and a crop of that side taken at a random "
                    "place, not resized: torchvision's CIFAR RandomCrop(32, padding=4), RotNet's CIFAR views; "
                    "--views.global-scale is then unused). Local crops are always resized.", paper="resized",
                    choices=CROPS)
    resample: str = opt("bilinear", "Interpolation of the resized crops: bilinear (torchvision's default) or "
                        "bicubic (MAE's RandomResizedCrop(interpolation=3), its values clamped to [0, 1] as "
                        "PIL's 8-bit images are).", paper="bilinear", choices=RESAMPLE)
    flip: float = opt(0.5, "Horizontal-flip probability. Set 0 where orientation carries the label.", paper=0.5,
                      low=0, high=1)
    color_jitter: float = opt(0.8, "Colour-jitter probability (strengths from the recipe; saturation and hue "
                              "on colour images only).", paper=0.8, low=0, high=1)
    jitter_strength: float = opt(1.0, "Scales the recipe's jitter strengths (SimCLR's colour-distortion strength, "
                                 "its data_util.py `s`; hue capped at 0.5). Contrastive methods gain from strong "
                                 "jitter (SimCLR, Table 1); on grayscale data the brightness and contrast jitter "
                                 "is what keeps the loss from matching views by their intensity.", paper=1.0,
                                 low=0)
    grayscale: float = opt(0.2, "Random-grayscale probability (colour images only).", paper=0.2,
                           low=0, high=1)
    blur: bool = opt(True, "The recipe's Gaussian blur (probabilities per view from --views.recipe), sigma "
                     "0.1-2.0 scaled from 224 px to the crop size. Off for tiny images where it erases "
                     "the content.", paper=True)
    solarize: float | None = opt(None, "Solarisation probability on the second global crop (default: the "
                                 "recipe's, 0.2 for dino/byol, 0 for simclr/mocov2).", paper=None,
                                 low=0, high=1)


def _blur(size: int, p: float) -> nn.Module:
    # DINO blurs 224-px crops with sigma in [0.1, 2.0]: keep the same sigma relative to the crop size.
    scale = size / 224
    k = max(3, int(23 * scale) // 2 * 2 + 1)
    return K.RandomGaussianBlur((k, k), (0.1 * scale, 2.0 * scale), p=p)


def view_recipe(name: str) -> ViewRecipe:
    if name not in VIEW_RECIPES:
        raise ValueError(f"unknown --views.recipe {name!r}: choose one of {', '.join(VIEW_RECIPES)}")
    return VIEW_RECIPES[name]


def _crop(cfg: ViewsConfig, size: int, scale: tuple[float, float], padded: bool) -> list[nn.Module]:
    """The crop of a view: a random resized crop of `scale` of the area (bicubic values clamped to [0, 1]),
    or with `padded` a crop of side `size` of the image padded by size / 8 (torchvision's RandomCrop with
    padding, zeros)."""
    if padded:
        return [K.RandomCrop((size, size), padding=round(size / 8), pad_if_needed=True)]
    crop = K.RandomResizedCrop((size, size), scale=scale, resample=cfg.resample.upper())
    return [crop, nn.Hardtanh(0.0, 1.0)] if cfg.resample == "bicubic" else [crop]


def _pipeline(cfg: ViewsConfig, size: int, scale: tuple[float, float], channels: int, blur_p: float,
              solarize_p: float, padded: bool = False) -> nn.Sequential:
    ops = _crop(cfg, size, scale, padded)
    if cfg.flip > 0:
        ops.append(K.RandomHorizontalFlip(p=cfg.flip))
    if cfg.color_jitter > 0:
        bright, contrast, sat, hue = (cfg.jitter_strength * j for j in view_recipe(cfg.recipe).jitter)
        sat, hue = (sat, min(hue, 0.5)) if channels == 3 else (0.0, 0.0)
        ops.append(K.ColorJitter(bright, contrast, sat, hue, p=cfg.color_jitter))
    if cfg.grayscale > 0 and channels == 3:
        ops.append(K.RandomGrayscale(p=cfg.grayscale))
    if cfg.blur and blur_p > 0:
        ops.append(_blur(size, blur_p))
    if solarize_p > 0:
        ops.append(K.RandomSolarize(0.0, 0.0, p=solarize_p))
    return nn.Sequential(*ops)


def cropping_mode(device: torch.device) -> str:
    """How kornia's RandomResizedCrop cuts a batch on `device`: "slice" crops image by image in a Python loop
    with device-to-host reads of the boxes (as fast as one warp on a CPU, 1.8x faster at 224 px), "resample" warps
    the whole batch at once (no host sync: the GPU never waits on the loop)."""
    return "resample" if device.type == "cuda" else "slice"


def set_cropping(module: nn.Module, device: torch.device) -> None:
    """Every RandomResizedCrop under `module` crops the way that suits `device` (see `cropping_mode`)."""
    mode = cropping_mode(device)
    for m in module.modules():
        if isinstance(m, K.RandomResizedCrop) and m.flags["cropping_mode"] != mode:
            m.flags["cropping_mode"] = mode
            m._compute_matrix_lazily = mode == "slice"  # "resample" warps through the matrix: build it eagerly


class MultiCropViews(nn.Module):
    """uint8 (B, C, H, W) -> list of n_global + n_local normalised float views (globals first)."""

    def __init__(self, cfg: ViewsConfig, channels: int, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.cfg = cfg
        r = view_recipe(cfg.recipe)
        blur = r.blur if cfg.blur else (0.0, 0.0, 0.0)
        solarize = r.solarize if cfg.solarize is None else cfg.solarize
        self.globals = nn.ModuleList(  # odd global views are T, even ones T' (BYOL's and DINO's pair)
            _pipeline(cfg, cfg.global_size, cfg.global_scale, channels, blur[i % 2], solarize * (i % 2),
                      padded=cfg.crop == "padded")
            for i in range(cfg.n_global)
        )
        self.local = _pipeline(cfg, cfg.local_size, cfg.local_scale, channels, blur[2], 0.0)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        set_cropping(self, images.device)
        x = images.float().div_(255)  # (B, C, H, W) in [0, 1]
        views = [aug(x) for aug in self.globals] + [self.local(x) for _ in range(self.cfg.n_local)]
        return [(v - self.mean) / self.std for v in views]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Un-augmented float input for evaluation: uint8 or [0,1] float (B, C, H, W) -> normalised."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images
        return (x - self.mean) / self.std


def channel_stats(images: torch.Tensor, max_images: int = 10000, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of a uint8 (N, C, H, W) stack, over `max_images` images drawn
    uniformly without replacement by a generator seeded with `seed` (the first images of a class-sorted
    folder would be its first classes only); the same stack always gives the same numbers."""
    if len(images) > max_images:
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:max_images]
        images = images[pick.sort().values]  # (max_images, C, H, W), in stored order
    x = images.float() / 255
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
