"""The masked-image-modelling figure of the seeds (MAE's Fig. 2): for a few training images, the masked
input, the reconstruction and the original side by side, one row per image."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.insight.figure import save_figure, to_display

COLUMNS = ("masked", "reconstruction", "original")


def to_uint8(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """Normalised (B, C, H, W) -> uint8 in 0..255, clipped (reconstructions overshoot)."""
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return (images.detach().float().cpu() * s + m).clamp(0, 1).mul(255).round().to(torch.uint8)


def reconstruction_figure(panels: dict[str, torch.Tensor], mean: list[float], std: list[float], path: Path,
                          title: str = "") -> Path:
    """Save the figure: `panels` maps each of COLUMNS to normalised images (B, C, H, W)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {k: to_uint8(panels[k], mean, std) for k in COLUMNS}
    rows = shown["original"].shape[0]
    fig, axes = plt.subplots(rows, 3, figsize=(4.2, 1.45 * rows + 0.4), squeeze=False)
    for r in range(rows):
        for c, name in enumerate(COLUMNS):
            axes[r, c].imshow(to_display(shown[name][r]), interpolation="nearest")
            if r == 0:
                axes[r, c].set_title(name, fontsize=8)
    return save_figure(fig, axes, path, title, 9)


def save_reconstructions(method: nn.Module, images: torch.Tensor, views: nn.Module, size: int, path: Path,
                         seed: int, count: int = 6) -> Path | None:
    """The figure of a trained method for its first `count` uint8 training images (N, C, H, W), resized to
    `size` and normalised by `views` (MultiCropViews), masks drawn with `seed` without touching the caller's
    RNG: torch.manual_seed reseeds the CPU and every CUDA generator, so all of them are forked and restored;
    None (no file) for methods that do not reconstruct pixels."""
    x = images[:count].float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    view = views.normalize(x.to(views.mean.device))
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        was = method.training
        method.eval()
        panels = method.reconstruct(view)
        method.train(was)
    if panels is None:
        return None
    mean, std = views.mean.flatten().tolist(), views.std.flatten().tolist()
    return reconstruction_figure(panels, mean, std, path, f"{method.name}: masked, reconstructed, original")
