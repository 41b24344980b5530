"""Collapse measures of a batch of embeddings (B, d).

`embedding_std` is SimSiam's (Chen & He, 2021, Sec. 4.1): the per-dimension standard deviation of the
L2-normalised embeddings. Collapsed outputs (one vector for every image) give 0; embeddings spread like an
isotropic Gaussian give about 1/sqrt(d), which `ideal_std` returns for reference.
`effective_rank` is RankMe's (Garrido et al., 2023): exp of the entropy of the normalised singular values,
1 for embeddings on a line (dimensional collapse) up to min(B, d) for a spread-out batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the batch standard deviation of F.normalize(z): (B, d) -> float."""
    return float(F.normalize(z.float(), dim=-1).std(dim=0).mean())


def ideal_std(dim: int) -> float:
    """The value of `embedding_std` for isotropic Gaussian embeddings of dimension `dim`."""
    return 1 / math.sqrt(dim)


def collapse_logs(z: torch.Tensor, backbone: torch.Tensor | None = None) -> dict[str, float]:
    """What methods log: `emb_std` of embeddings z (B, d), its isotropic value `emb_std_ideal` and their
    `emb_rank`; joint-embedding methods, whose z is a projection, also pass the backbone's features (B', D) of
    the same images, logged as `backbone_std`, `backbone_std_ideal` and `backbone_rank`."""
    logs = _measures("emb", z)
    return logs if backbone is None else {**logs, **_measures("backbone", backbone)}


def _measures(prefix: str, z: torch.Tensor) -> dict[str, float]:
    return {f"{prefix}_std": embedding_std(z), f"{prefix}_std_ideal": ideal_std(z.shape[-1]),
            f"{prefix}_rank": effective_rank(z)}


@torch.no_grad()
def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe: exp(entropy of p), p = singular values of z (B, d) / their sum -> float in [1, min(B, d)];
    nan for embeddings that are not finite (a diverging step), where the SVD is undefined."""
    if not torch.isfinite(z).all():
        return float("nan")
    s = torch.linalg.svdvals(z.float())  # (min(B, d),)
    p = s / s.sum().clamp_min(eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))
