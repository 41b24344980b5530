"""Attention figures as PNG: one grid per image, the image, each head's map and their mean on the first row,
each head's mass-threshold mask over the image on the second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_display(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 -> (H, W, 3) uint8 for imshow."""
    return image.expand(3, -1, -1).permute(1, 2, 0).contiguous().numpy()


def overlay(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 60, 30),
            alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 image with the (H, W) bool mask tinted in `color`."""
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    return out.round().astype(np.uint8)


def save_figure(fig, axes, path: Path, title: str, title_size: int) -> Path:
    """Axes off, the title on top, tight layout; written to `path` as PNG and closed."""
    import matplotlib.pyplot as plt

    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=title_size)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def attention_figure(image: torch.Tensor, maps: torch.Tensor, masks: torch.Tensor, path: Path,
                     title: str = "", rollout: torch.Tensor | None = None) -> Path:
    """Save the grid for one image as PNG.

    image: (C, H, W) uint8; maps: (heads, H, W) float attention at image resolution; masks: (heads, H, W)
    bool; rollout: optional (H, W) map shown after the mean.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = maps.shape[0]
    extra = [("mean of heads", maps.mean(0))] + ([("rollout", rollout)] if rollout is not None else [])
    cols = 1 + heads + len(extra)
    fig, axes = plt.subplots(2, cols, figsize=(1.6 * cols, 3.5), squeeze=False)
    rgb = to_display(image)
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title("image", fontsize=8)
    for i in range(heads):
        axes[0, 1 + i].imshow(maps[i].numpy(), cmap="inferno")
        axes[0, 1 + i].set_title(f"head {i}", fontsize=8)
        axes[1, 1 + i].imshow(overlay(rgb, masks[i].numpy()))
        axes[1, 1 + i].set_title("mask", fontsize=8)
    for j, (name, m) in enumerate(extra):
        axes[0, 1 + heads + j].imshow(m.numpy(), cmap="inferno")
        axes[0, 1 + heads + j].set_title(name, fontsize=8)
    axes[1, 0].imshow(overlay(rgb, masks.any(0).numpy()))
    axes[1, 0].set_title("any head", fontsize=8)
    return save_figure(fig, axes, path, title, 9)


def comparison_figure(images: torch.Tensor, truth: torch.Tensor, models: dict[str, tuple[torch.Tensor, torch.Tensor]],
                      path: Path, title: str = "") -> Path:
    """Several models' attention on the same images, one image per row: the image, its object masks, then per
    model the heads' mean attention and its mass-threshold mask over the image.

    images: (n, C, H, W) uint8; truth: (n, H, W) object ids; models: name -> (maps (n, H, W) float, masks
    (n, H, W) bool), all at image resolution.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, cols = len(images), 2 + 2 * len(models)
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.4 * n + 0.4), squeeze=False)
    for r in range(n):
        rgb = to_display(images[r])
        axes[r, 0].imshow(rgb)
        axes[r, 1].imshow(truth[r].numpy(), cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        for j, (maps, masks) in enumerate(models.values()):
            axes[r, 2 + 2 * j].imshow(maps[r].numpy(), cmap="inferno")
            axes[r, 3 + 2 * j].imshow(overlay(rgb, masks[r].numpy()))
    heads = ["image", "objects"] + [f"{name}\n{what}" for name in models for what in ("attention", "mask")]
    for c, text in enumerate(heads):
        axes[0, c].set_title(text, fontsize=7)
    return save_figure(fig, axes, path, title, 8)


__all__ = ["attention_figure", "comparison_figure", "overlay", "to_display"]
