"""KoLeo: the Kozachenko-Leonenko differential-entropy regulariser (Sablayrolles et al., 2019, "Spreading vectors
for similarity search"), as DINOv2 applies it to the student's [CLS] embeddings (dinov2/loss/koleo_loss.py).

On L2-normalised embeddings x_1..x_n, -1/n sum_i log(d_i + eps), d_i the distance from x_i to its nearest other
embedding of the batch: it pushes neighbours apart, so that the batch spreads over the sphere. DINOv2 computes it
on each process's batch alone, per global crop (ssl_meta_arch.py: the two crops' [CLS] chunks summed, weight 0.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.methods.precision import fp32


def nearest_neighbours(x: torch.Tensor) -> torch.Tensor:
    """Index of each row's nearest other row (n,) for L2-normalised rows x (n, d): the largest inner product
    (koleo_loss.py pairwise_NNs_inner: the diagonal set to -1)."""
    dots = x @ x.T  # (n, n)
    dots = dots.masked_fill(torch.eye(len(x), dtype=torch.bool, device=x.device), -1)
    return dots.argmax(dim=1)


@fp32
def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo of embeddings x (n, d) -> scalar, in float32: -mean_i log(|x_i - x_nn(i)| + eps) after
    L2-normalisation (the neighbour is chosen without gradient, as torch.max's index in the official code)."""
    x = F.normalize(x.float(), eps=eps, p=2, dim=-1)
    with torch.no_grad():
        nn_index = nearest_neighbours(x)
    distances = F.pairwise_distance(x, x[nn_index], p=2, eps=eps)  # (n,), nn.PairwiseDistance(2, eps=1e-8)
    return -torch.log(distances + eps).mean()
