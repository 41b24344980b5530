"""Projection heads shared by the methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int, batch_norm: bool = False,
        last_bn: bool = False, act: str = "gelu") -> nn.Sequential:
    """`layers` Linear layers with `act` (and optional BatchNorm) between them; layers=1 is one Linear.

    `last_bn` ends with a BatchNorm without affine parameters (SimSiam's projector, MoCo v3's heads,
    Barlow Twins' normalisation); the Linear before any BatchNorm has no bias (it would be cancelled).
    """
    dims = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        last = i == len(dims) - 2
        mods.append(nn.Linear(a, b, bias=not (batch_norm and not last) and not (last and last_bn)))
        if not last:
            mods += [nn.BatchNorm1d(b)] if batch_norm else []
            mods.append(ACTIVATIONS[act]())
        elif last_bn:
            mods.append(nn.BatchNorm1d(b, affine=False))
    return nn.Sequential(*mods)


class DINOHead(nn.Module):
    """DINO projection head: MLP -> L2-normalise -> weight-normalised linear layer to `out_dim` logits.

    As in the official code: 3-layer MLP (hidden 2048, GELU) to a 256-d bottleneck, then a linear layer
    without bias whose weight is normalised; with `norm_last_layer` its norm (g) is fixed at 1, which
    stabilises training. Built with torch's parametrisation API so the module can be deep-copied.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True) -> None:
        super().__init__()
        self.mlp = mlp(in_dim, hidden_dim, bottleneck_dim, layers, batch_norm=use_bn)
        self.apply(_init_linear)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0  # (out_dim, 1) norms
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor, predictor: nn.Module | None = None) -> torch.Tensor:
        """x (B, in_dim) -> logits (B, out_dim); `predictor` (bottleneck -> bottleneck) maps the MLP's output
        before the normalisation (DINO's --dino.predictor ablation, on the student only)."""
        x = self.mlp(x)  # (B, bottleneck)
        x = predictor(x) if predictor is not None else x
        with torch.autocast(x.device.type, enabled=False):  # logits divided by a 0.04 temperature: float32
            return self.last_layer(F.normalize(x.float(), dim=-1))  # (B, out_dim)


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
