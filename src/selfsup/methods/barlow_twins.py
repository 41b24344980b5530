"""Barlow Twins (Zbontar et al., 2021), as in facebookresearch/barlowtwins (main.py).

A shared encoder (backbone + 3-layer projector) embeds both views; each embedding dimension is standardised
over the batch (BatchNorm without affine: biased variance, eps 1e-5), and the cross-correlation matrix
c = z1n^T z2n / N is pushed to the identity:
    L = sum_i (1 - c_ii)^2 + lambda * sum_{i != j} c_ij^2.
The official code standardises with a SyncBatchNorm and all-reduces c, i.e. it uses the global batch; here
the embeddings are gathered from every process with `gather_with_grad` (see methods/distributed.py for why
the averaged DDP gradient is then the gradient of the global-batch loss), so N is the global batch.
The official views are BYOL's asymmetric pair (`--views.recipe byol`, see methods/byol.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import TWO_VIEWS, Method
from selfsup.methods.distributed import gather_with_grad
from selfsup.methods.precision import fp32
from selfsup.methods.recipe import optim, section
from selfsup.models.heads import mlp
from selfsup.options import opt


@dataclass
class BarlowTwinsConfig:
    proj_hidden_dim: int = opt(2048, "Hidden width of the 3-layer projector. The paper finds Barlow Twins "
                               "benefits from very wide projectors (8192 and up), but three 8192-wide layers take "
                               "~3x the time of a vit-cpu backbone step on CPU, 2048 ~0.3x (solo-learn's "
                               "CIFAR width).", paper=8192, low=1)
    proj_output_dim: int = opt(2048, "Embedding dimension d (c is d x d): the larger, the more redundancy "
                               "is reduced, at O(N d^2) for c.", paper=8192, low=1)
    head_bn: bool = opt(True, "BatchNorm in the projector's hidden layers (per process on CPU; synchronised "
                        "on GPUs). The standardisation of the loss is kept either way.", paper=True)
    lambd: float = opt(0.0051, "Weight of the off-diagonal (redundancy) terms. Raise it if "
                       "off_diag in the log stays high; lower it if on_diag does.", paper=0.0051, low=0)
    scale_loss: float = opt(1.0, "Factor on the whole loss. solo-learn multiplies by 0.1 in its CIFAR "
                            "recipe (scripts/pretrain/cifar/barlow.yaml, d=2048); with AdamW or LARS it "
                            "only changes the balance against weight decay and eps, with SGD it scales "
                            "the learning rate.", paper=1.0, above=0)


@fp32
def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> tuple[torch.Tensor, dict]:
    """This process's embeddings of views 1 and 2, (B, d) each -> loss over the global batch, its two parts
    (detached 0-d tensors: reading them is a device sync)."""
    z = gather_with_grad(torch.stack([z1, z2], dim=1)).float()  # (N, 2, d), N = world * B
    z1n, z2n = (F.batch_norm(v, None, None, training=True, eps=1e-5) for v in z.unbind(1))  # (N, d)
    c = z1n.T @ z2n / z.shape[0]  # (d, d) cross-correlation
    eye = torch.eye(c.shape[0], dtype=torch.bool, device=c.device)
    on_diag = (1 - c.diagonal()).pow(2).sum()
    off_diag = c.masked_fill(eye, 0).pow(2).sum()
    return on_diag + lambd * off_diag, {"on_diag": on_diag.detach(), "off_diag": off_diag.detach()}


# facebookresearch/barlowtwins main.py: LARS (eta 0.001, biases and norms excluded, lines 90-101), lr 0.2
# for weights and 0.0048 for biases and norms, both times batch/256 (lines 33-36, 158, 167-168), weight
# decay 1e-6 (line 37, the README command's; the paper's text says 1.5e-6), 10 warm-up epochs and a cosine
# to 0.001 of the peak (lines 157-166: 0.0016 at the paper's batch 2048), BYOL's views (lines 290-320).
RECIPES = {"any": {"optim": optim("lars", 0.2, 1e-6, 10, lr_bias=0.0048, min_lr=0.0016),
                   "views": {**TWO_VIEWS, **section(recipe="byol")}}}


class BarlowTwins(Method):
    name = "barlow-twins"
    config_class = BarlowTwinsConfig
    recipes = RECIPES

    def __init__(self, backbone: nn.Module, cfg: BarlowTwinsConfig, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        self.projector = mlp(backbone.embed_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, 3,
                             batch_norm=cfg.head_bn, act="relu")
        self.projector[-1].register_parameter("bias", None)  # no bias, as official: standardising cancels it

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        h = self.embed(views)  # 2 x (B, D)
        z1, z2 = (self.projector(x) for x in h)  # (B, d) each; BN statistics per view
        loss, parts = barlow_twins_loss(z1, z2, self.cfg.lambd)
        if not diagnostics:
            return self.cfg.scale_loss * loss, {}
        return self.cfg.scale_loss * loss, {**{k: float(v) for k, v in parts.items()},
                                            **collapse_logs(torch.cat([z1, z2]), backbone=torch.cat(h))}
