"""SimSiam (Chen & He, 2021), as in facebookresearch/simsiam (simsiam/builder.py, main_simsiam.py).

One encoder (backbone + projector) for both views, a predictor on top, and a stop-gradient on the other
view's projection; no momentum encoder, no negatives. Loss, symmetrised over the views:
    D = -cos(p_1, sg(z_2)) / 2 - cos(p_2, sg(z_1)) / 2,   minimum -1.
The projector is 3 layers (2048 wide, BN after every layer, the last without affine parameters); the
predictor is a 2-layer bottleneck (2048 -> 512 -> 2048, BN in the hidden layer).
Logged `emb_std` is the paper's collapse measure (Sec. 4.1): the std of z/|z| over the batch, about
1/sqrt(d) when healthy and 0 when collapsed.
The views are BYOL's asymmetric pair (see methods/byol.py); the paper uses MoCo v2's symmetric ones (blur
with p=0.5 on both, no solarisation): `--views.solarize 0` removes the solarisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import TWO_VIEW_DEFAULTS, Method
from selfsup.models.heads import mlp
from selfsup.options import opt


@dataclass
class SimSiamConfig:
    proj_dim: int = opt(2048, "Width of the projector's layers and of its output (the loss's space).",
                        paper=2048, low=1)
    proj_layers: int = opt(3, "Linear layers in the projector.", paper=3, low=1)
    pred_hidden_dim: int = opt(512, "Bottleneck of the predictor. Keep it about d/4: the paper finds the "
                               "bottleneck helps.", paper=512, low=1)
    head_bn: bool = opt(True, "BatchNorm in the projector and predictor (per process on CPU; synchronised "
                        "on GPUs). The paper finds SimSiam fails without it; off only for tests.", paper=True)


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Predictions p_v and projections z_v of views v = 1, 2, all (B, d) -> scalar in [-1, 1]."""
    def d(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # negative cosine, batch mean
        return -F.cosine_similarity(p.float(), z.detach().float(), dim=-1).mean()
    return d(p1, z2) / 2 + d(p2, z1) / 2


class SimSiam(Method):
    name = "simsiam"
    config_class = SimSiamConfig
    defaults = TWO_VIEW_DEFAULTS

    def __init__(self, backbone: nn.Module, cfg: SimSiamConfig, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        self.projector = mlp(backbone.embed_dim, cfg.proj_dim, cfg.proj_dim, cfg.proj_layers,
                             batch_norm=cfg.head_bn, last_bn=cfg.head_bn, act="relu")
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim, 2, batch_norm=cfg.head_bn,
                             act="relu")

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        z1, z2 = (self.projector(h) for h in self.embed(views))  # (B, d) each; BN statistics per view
        loss = simsiam_loss(self.predictor(z1), self.predictor(z2), z1, z2)
        return loss, collapse_logs(torch.cat([z1, z2])) if diagnostics else {}
