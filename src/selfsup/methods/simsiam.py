"""SimSiam (Chen & He, 2021), as in facebookresearch/simsiam (simsiam/builder.py, main_simsiam.py).

One encoder (backbone + projector) for both views, a predictor on top, and a stop-gradient on the other
view's projection; no momentum encoder, no negatives. Loss, symmetrised over the views:
    D = -cos(p_1, sg(z_2)) / 2 - cos(p_2, sg(z_1)) / 2,   minimum -1.
The projector is 3 layers (2048 wide, BN after every layer, the last without affine parameters); the
predictor is a 2-layer bottleneck (2048 -> 512 -> 2048, BN in the hidden layer).
Logged `emb_std` is the paper's collapse measure (Sec. 4.1): the std of z/|z| over the batch, about
1/sqrt(d) when healthy and 0 when collapsed.
The views are MoCo v2's aug+ (`--views.recipe mocov2`: blur with p=0.5 on both, no solarisation), as the
paper; the predictor keeps the peak learning rate (`fix_pred_lr`).
The paper's two collapse ablations (Sec. 4.1-4.2) are switches: `stop_gradient` and `predictor` (without
it p = z, the identity).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import TWO_VIEWS, Method, ParamGroup, split_norm_bias
from selfsup.methods.precision import fp32
from selfsup.methods.recipe import optim, section
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
    fix_pred_lr: bool = opt(True, "Keep the predictor at the peak learning rate instead of decaying it "
                            "(--fix-pred-lr of the README's command; the paper's Table 1 finds it slightly "
                            "better than decaying it).", paper=True)
    stop_gradient: bool = opt(True, "Stop the gradient through the other view's projection. Off, SimSiam "
                              "collapses (loss -> -1, emb_std -> 0; the paper's 0.1% accuracy). Only off to "
                              "study collapse.", paper=True)
    predictor: bool = opt(True, "The prediction MLP h. Off (p = z), SimSiam collapses as without stop-gradient "
                          "(the paper's Table 1a: 0.1%). Only off to study collapse.", paper=True)


@fp32
def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                 stop_gradient: bool = True) -> torch.Tensor:
    """Predictions p_v and projections z_v of views v = 1, 2, all (B, d) -> scalar in [-1, 1]; the gradient
    through z stops unless `stop_gradient` is False (the paper's collapsing ablation)."""
    def d(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # negative cosine, batch mean
        z = z.detach() if stop_gradient else z
        return -F.cosine_similarity(p.float(), z.float(), dim=-1).mean()
    return d(p1, z2) / 2 + d(p2, z1) / 2


# facebookresearch/simsiam main_simsiam.py: SGD on every parameter (weight decay 1e-4 on norms and biases
# too, lines 193-201), lr 0.05 x batch/256 (lines 56, 157), no warm-up, cosine to 0 (lines 359-366) with
# the predictor's lr fixed (--fix-pred-lr, README), MoCo v2's aug+ views with crops of 0.2-1 (229-238).
RECIPES = {"any": {"optim": optim("sgd", 0.05, 1e-4, 0, decay_norm_bias=True),
                   "views": {**TWO_VIEWS, **section(recipe="mocov2", global_scale=(0.2, 1.0))}}}


class SimSiam(Method):
    name = "simsiam"
    config_class = SimSiamConfig
    recipes = RECIPES

    def __init__(self, backbone: nn.Module, cfg: SimSiamConfig, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        self.projector = mlp(backbone.embed_dim, cfg.proj_dim, cfg.proj_dim, cfg.proj_layers,
                             batch_norm=cfg.head_bn, last_bn=cfg.head_bn, act="relu")
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim, 2, batch_norm=cfg.head_bn,
                             act="relu") if cfg.predictor else nn.Identity()

    def param_groups(self) -> list[ParamGroup]:
        """Encoder and predictor apart: the predictor's lr stays fixed with fix_pred_lr (main_simsiam.py 193-195)."""
        encoder = [(n, p) for n, p in self.named_parameters() if not n.startswith("predictor.")]
        predictor = self.predictor.named_parameters(prefix="predictor")
        return (split_norm_bias(encoder, skip=self.no_weight_decay)
                + split_norm_bias(predictor, fixed_lr=self.cfg.fix_pred_lr, skip=self.no_weight_decay))

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        h = self.embed(views)  # 2 x (B, D)
        z1, z2 = (self.projector(x) for x in h)  # (B, d) each; BN statistics per view
        loss = simsiam_loss(self.predictor(z1), self.predictor(z2), z1, z2, self.cfg.stop_gradient)
        return loss, collapse_logs(torch.cat([z1, z2]), backbone=torch.cat(h)) if diagnostics else {}
