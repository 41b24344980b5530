"""SimSiam's collapse measure (Chen & He, 2021, Sec. 4.1): the per-dimension standard deviation of the
L2-normalised embeddings. Collapsed outputs (one vector for every image) give 0; embeddings spread like an
isotropic Gaussian give about 1/sqrt(d), which `embedding_std` returns as `ideal` for reference."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the batch standard deviation of F.normalize(z): (B, d) -> float."""
    return float(F.normalize(z.float(), dim=-1).std(dim=0).mean())


def collapse_logs(z: torch.Tensor) -> dict[str, float]:
    """What methods log: `emb_std` of their head's outputs (B, d) and its isotropic value `emb_std_ideal`."""
    return {"emb_std": embedding_std(z), "emb_std_ideal": ideal_std(z.shape[-1])}


def ideal_std(dim: int) -> float:
    """The value of `embedding_std` for isotropic Gaussian embeddings of dimension `dim`."""
    return 1 / math.sqrt(dim)
