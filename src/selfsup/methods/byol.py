"""BYOL: Bootstrap Your Own Latent (Grill et al., 2020), as in deepmind-research/byol (byol_experiment.py).

An online network (backbone, projector, predictor) predicts the projection of the other view made by a
target network (backbone, projector) whose weights are an EMA of the online ones; nothing flows back into
the target. The EMA momentum rises from its base value to 1 with a cosine,
tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, precomputed in `setup` and applied after each step.
Loss, symmetrised over the views and averaged over the batch:
    L = 2 - 2 cos(q(z_1), sg(z'_2)) + 2 - 2 cos(q(z_2), sg(z'_1)),   in [0, 8].
BYOL's asymmetric augmentations T/T' (view 1 always blurred; view 2 blurred with p=0.1 and solarised with
p=0.2; colour jitter 0.8 with 0.4/0.4/0.2/0.1, grayscale 0.2, flip 0.5) are what `MultiCropViews` makes
with `--views.recipe byol`; `TWO_VIEWS` gives its crop range 0.08-1 and no local crops.
The evaluated backbone is the online one, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import TWO_VIEWS, Method
from selfsup.methods.momentum import ema_update, momentum_copy
from selfsup.methods.precision import fp32
from selfsup.methods.recipe import optim, section
from selfsup.models.heads import mlp
from selfsup.options import opt
from selfsup.schedules import cosine_schedule


@dataclass
class BYOLConfig:
    proj_hidden_dim: int = opt(4096, "Hidden width of the projector and predictor MLPs. Cheap even on CPU "
                               "(both heads add ~5% to a vit-cpu step); 2048 loses little.", paper=4096, low=1)
    proj_output_dim: int = opt(256, "Output width of the projector and predictor (the loss's space).",
                               paper=256, low=1)
    head_bn: bool = opt(True, "BatchNorm in the hidden layer of the projector and predictor. BYOL needs it "
                        "in practice (per process on CPU, synchronised on GPUs); off only for tests.",
                        paper=True)
    momentum: float = opt(0.99, "Base EMA momentum of the target, raised to 1 with a cosine. The paper's "
                          "0.996 suits ~100k steps at batch 4096; for runs of a few thousand steps the "
                          "target follows too slowly, so 0.99 (solo-learn's CIFAR recipe). Lower it if "
                          "the loss plateaus early; raise it (0.996-0.999) for long runs.", paper=0.996, low=0, high=1)


@fp32
def byol_loss(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """Online predictions p_v and target projections t_v of views v = 1, 2, all (B, d) -> scalar."""
    def regress(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # ||p/|p| - t/|t|||^2, batch mean
        return 2 - 2 * F.cosine_similarity(p.float(), t.detach().float(), dim=-1).mean()
    return regress(p1, t2) + regress(p2, t1)


# BYOL (deepmind-research byol/configs/byol.py 21-23, 1000 epochs): LARS (eta 1e-3, biases and BatchNorm
# excluded), lr 0.2 per 256, weight decay 1.5e-6, 10 warm-up epochs, cosine to 0; the asymmetric views.
RECIPES = {"any": {"optim": optim("lars", 0.2, 1.5e-6, 10), "views": {**TWO_VIEWS, **section(recipe="byol")}}}


class BYOL(Method):
    name = "byol"
    config_class = BYOLConfig
    recipes = RECIPES

    def __init__(self, backbone: nn.Module, cfg: BYOLConfig, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        self.projector = mlp(backbone.embed_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, 2,
                             batch_norm=cfg.head_bn, act="relu")
        self.predictor = mlp(cfg.proj_output_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, 2,
                             batch_norm=cfg.head_bn, act="relu")
        self.target = momentum_copy(backbone=backbone, projector=self.projector)

    def setup(self, total_steps: int, steps_per_epoch: int) -> None:
        super().setup(total_steps, steps_per_epoch)
        self.momentum = cosine_schedule(self.cfg.momentum, 1.0, total_steps)

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        h = self.embed(views)  # 2 x (B, D)
        z1, z2 = (self.projector(x) for x in h)  # (B, d) each; BN statistics per view
        with torch.no_grad():
            t1, t2 = (self.target["projector"](x) for x in self.embed(views, self.target["backbone"]))
        loss = byol_loss(self.predictor(z1), self.predictor(z2), t1, t2)
        return loss, collapse_logs(torch.cat([z1, z2]), backbone=torch.cat(h)) if diagnostics else {}

    @torch.no_grad()
    def on_after_step(self, step: int) -> None:
        m = float(self.momentum[step])
        ema_update(self.target["backbone"], self.backbone, m)
        ema_update(self.target["projector"], self.projector, m)

    def schedule_values(self, step: int) -> dict[str, float]:
        return {"momentum": float(self.momentum[step])}
