"""VICReg (Bardes et al., 2022), as in facebookresearch/vicreg (main_vicreg.py).

A shared encoder (backbone + 3-layer expander) embeds both views into z1, z2 (N x d); the loss is
    lambda * s(z1, z2) + mu * [v(z1) + v(z2)] / 2 + nu * [c(z1) + c(z2)]
with invariance s = mean squared error of the pairs, variance v(z) = mean_j relu(1 - sqrt(Var z_j + 1e-4))
(unbiased variance) and covariance c(z) = sum_{i != j} Cov(z)_ij^2 / d. As in the official code, the
invariance is taken on this process's pairs (DDP's gradient average makes it the global mean) and the
variance and covariance on the embeddings of every process (its FullGatherLayer is `gather_with_grad`).
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
class VICRegConfig:
    proj_hidden_dim: int = opt(2048, "Hidden width of the 3-layer expander. Wider is better in the paper "
                               "(8192 and up), but three 8192-wide layers take ~3x the time of "
                               "a vit-cpu backbone step on CPU, 2048 ~0.3x (solo-learn's CIFAR width).",
                               paper=8192, low=1)
    proj_output_dim: int = opt(2048, "Embedding dimension d (the covariance is d x d, O(N d^2)).", paper=8192, low=1)
    head_bn: bool = opt(True, "BatchNorm in the expander's hidden layers (per process on CPU; synchronised "
                        "on GPUs); off only for tests.", paper=True)
    sim_coeff: float = opt(25.0, "lambda, weight of the invariance (MSE) term.", paper=25.0, low=0)
    std_coeff: float = opt(25.0, "mu, weight of the variance term. The paper's ablation: mu = lambda with "
                           "nu = 1 works best; without this term training collapses.", paper=25.0, low=0)
    cov_coeff: float = opt(1.0, "nu, weight of the covariance term.", paper=1.0, low=0)


@fp32
def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim: float, std: float, cov: float
                ) -> tuple[torch.Tensor, dict]:
    """This process's embeddings of views 1 and 2, (B, d) each -> loss, its three unweighted parts (detached
    0-d tensors: reading them is a device sync)."""
    invariance = F.mse_loss(z1.float(), z2.float())  # local pairs
    z = gather_with_grad(torch.stack([z1, z2], dim=1)).float().transpose(0, 1)  # (2, N, d), N = world * B
    n, d = z.shape[1:]
    z = z - z.mean(dim=1, keepdim=True)
    variance = F.relu(1 - torch.sqrt(z.var(dim=1) + 1e-4)).mean(dim=1).sum() / 2  # mean of the 2 views
    c = z.transpose(1, 2) @ z / (n - 1)  # (2, d, d) covariance of each view
    eye = torch.eye(d, dtype=torch.bool, device=c.device)
    covariance = c.masked_fill(eye, 0).pow(2).sum() / d  # summed over the 2 views
    loss = sim * invariance + std * variance + cov * covariance
    parts = {"invariance": invariance, "variance": variance, "covariance": covariance}
    return loss, {k: v.detach() for k, v in parts.items()}


# facebookresearch/vicreg main_vicreg.py: LARS (eta 0.001, biases and norms excluded, lines 109-115), base
# lr 0.2 times batch/256 (line 52), weight decay 1e-6 (line 54), 10 warm-up epochs and a cosine to 0.001 of
# the peak (lines 167-178: 0.0016 at the README's batch 2048), BYOL's views (augmentations.py).
RECIPES = {"any": {"optim": optim("lars", 0.2, 1e-6, 10, min_lr=0.0016),
                   "views": {**TWO_VIEWS, **section(recipe="byol")}}}


class VICReg(Method):
    name = "vicreg"
    config_class = VICRegConfig
    recipes = RECIPES

    def __init__(self, backbone: nn.Module, cfg: VICRegConfig, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        self.projector = mlp(backbone.embed_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, 3,
                             batch_norm=cfg.head_bn, act="relu")
        self.projector[-1].register_parameter("bias", None)  # no bias, as official: the loss ignores a shift of z

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        h = self.embed(views)  # 2 x (B, D)
        z1, z2 = (self.projector(x) for x in h)  # (B, d) each; BN statistics per view
        c = self.cfg
        loss, parts = vicreg_loss(z1, z2, c.sim_coeff, c.std_coeff, c.cov_coeff)
        if not diagnostics:
            return loss, {}
        return loss, {**{k: float(v) for k, v in parts.items()},
                      **collapse_logs(torch.cat([z1, z2]), backbone=torch.cat(h))}
