"""`selfsup embed`: a backbone's frozen features of a split saved as .npy, and a 2-D map of them (PCA or
t-SNE from scikit-learn) coloured by label, saved as PNG.

t-SNE follows the usual practice (van der Maaten & Hinton, 2008; scikit-learn's advice): the features are
first reduced to 50 dimensions by PCA, then embedded with perplexity 30 and PCA initialisation. It costs
about a minute for 5,000 points on two cores, hence `max_points` (a random subset, the same for a seed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

METHODS = ("pca", "tsne")
TSNE_PCA_DIMS = 50


def subsample(n: int, max_points: int | None, seed: int = 0) -> torch.Tensor:
    """Sorted indices of at most `max_points` of n rows, drawn at random (all rows when n <= max_points)."""
    if max_points is None or n <= max_points:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points].sort().values


def project_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, D) features -> (N, 2) map coordinates by PCA or t-SNE."""
    from sklearn.decomposition import PCA

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    x = np.asarray(features, dtype=np.float32)
    if len(x) < 3:
        raise ValueError(f"a 2-D map needs at least 3 points, got {len(x)}")
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE

    if x.shape[1] > TSNE_PCA_DIMS and len(x) > TSNE_PCA_DIMS:
        x = PCA(n_components=TSNE_PCA_DIMS, random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(x) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_map(points: np.ndarray, labels: np.ndarray | None, path: Path, classes: list[str] | None = None,
             title: str = "") -> Path:
    """Scatter of (N, 2) points coloured by (N,) labels (a legend up to 20 classes), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 6))
    size = float(np.clip(3000 / max(1, len(points)), 2, 20))  # smaller dots for denser maps
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.6)
    else:
        values = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(values) <= 10 else "tab20" if len(values) <= 20 else "viridis")
        for i, c in enumerate(values):
            keep = labels == c
            name = classes[int(c)] if classes is not None and int(c) < len(classes) else str(int(c))
            color = cmap(i) if len(values) <= 20 else cmap(i / max(1, len(values) - 1))
            ax.scatter(points[keep, 0], points[keep, 1], s=size, alpha=0.6, color=color, label=name)
        if len(values) <= 20:
            ax.legend(markerscale=max(1.0, 12 / size), fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_embeddings(features: torch.Tensor, labels: torch.Tensor | None, out: Path) -> list[Path]:
    """(N, D) features to `out` (.npy, float32) and the (N,) labels, if any, to `<out stem>_labels.npy`."""
    out = out if out.suffix == ".npy" else out.with_name(out.name + ".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, features.numpy().astype(np.float32))
    written = [out]
    if labels is not None:
        written.append(out.with_name(out.stem + "_labels.npy"))
        np.save(written[-1], labels.numpy().astype(np.int64))
    return written


__all__ = ["METHODS", "plot_map", "project_2d", "save_embeddings", "subsample"]
