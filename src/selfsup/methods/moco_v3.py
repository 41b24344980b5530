"""MoCo v3 (Chen, Xie & He, 2021): a predictor and a momentum encoder, the batch's other keys as negatives.

"An Empirical Study of Training Self-Supervised Vision Transformers", as in facebookresearch/moco-v3
moco/builder.py and main_moco.py.

The base encoder (backbone + projector) is followed by a predictor; the momentum encoder is an EMA copy
of backbone + projector whose momentum rises to 1 with a cosine. No queue: the negatives are the other
keys of the batch, gathered from every process. For each view order the loss is
    ctr(q, k) = 2T * CrossEntropy(q @ k_all.T / T, labels = arange(B) + B * rank),   q, k L2-normalised,
and the total is ctr(q1, k2) + ctr(q2, k1). For ViTs the patch projection is frozen at its random
initialisation (`--stop-grad-conv1`), which the paper found to reduce training instability. The base
encoder is the one evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import TWO_VIEWS, Method
from selfsup.methods.distributed import gather, rank
from selfsup.methods.info_nce import info_nce
from selfsup.methods.momentum import ema_update, momentum_copy
from selfsup.methods.precision import fp32
from selfsup.methods.recipe import optim, section
from selfsup.methods.shuffled_bn import momentum_forward
from selfsup.models.heads import mlp
from selfsup.models.vit_layers import PatchEmbed
from selfsup.options import opt
from selfsup.schedules import cosine_schedule


@dataclass
class MoCoV3Config:
    proj_hidden_dim: int = opt(2048, "Hidden width of the projector. The paper's 4096x4096 middle layer would "
                               "cost about three times the vit-cpu backbone per step on CPU; 2048 keeps "
                               "the heads cheap.", paper=4096, low=1)
    pred_hidden_dim: int = opt(2048, "Hidden width of the 2-layer predictor (4096 in the paper, see "
                               "proj-hidden-dim).", paper=4096, low=1)
    out_dim: int = opt(256, "Output width of projector and predictor: the space of the loss.", paper=256, low=1)
    proj_layers: int = opt(3, "Linear layers in the projector: 3 for ViTs, 2 for ResNets in the official "
                           "code.", paper=3, low=1)
    head_bn: bool = opt(True, "BatchNorm after every layer of projector and predictor (the last ones without "
                        "affine parameters). Synchronised across GPUs; per process on CPU.", paper=True)
    pred_last_bn: bool = opt(True, "BatchNorm after the predictor's last layer (official code: yes for ViTs, "
                             "no for ResNets). Only with head-bn.", paper=True)
    momentum: float = opt(0.99, "Initial EMA momentum of the momentum encoder, raised to 1 with a cosine. "
                          "0.99 for ViTs and 100-300-epoch ResNet runs; 0.996 for 1000-epoch ResNet runs.",
                          paper=0.99, low=0, high=1)
    temperature: float = opt(0.2, "Softmax temperature T: 0.2 for ViTs; the paper's ResNet-50 runs use 1.0.",
                             paper=0.2, above=0)
    freeze_patch_embed: bool = opt(True, "Keep the ViT patch projection at its random initialisation (the "
                                   "paper's stability trick against the dips of the training curve). No "
                                   "effect on ResNets.", paper=True)


@fp32
def ctr(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo v3's contrastive loss: this process's queries q (B, d) against the keys k (B, d) of every
    process (gathered without gradient); q_i's positive is k_i, the other keys are its negatives."""
    labels = torch.arange(len(q), device=q.device) + rank() * len(q)
    return 2 * temperature * info_nce(q, gather(k), labels, temperature)


# facebookresearch/moco-v3: ViT-S (CONFIG.md 109-116: AdamW lr 1.5e-4 per 256, weight decay 0.1 on every
# parameter (main_moco.py 229), 40 warm-up epochs of 300, --moco-t .2, 3-layer projector, predictor
# ending in BN); ResNet-50 (CONFIG.md 100 epochs; main_moco.py 65-117: LARS lr 0.6, weight decay 1e-6
# without norms and biases (moco/optimizer.py), 10 warm-up epochs, --moco-t 1.0, --crop-min .2, 2-layer
# projector, predictor without last BN (moco/builder.py MoCo_ResNet)). Both: cosine lr to 0, momentum 0.99
# raised to 1 with a cosine, BYOL's views (main_moco.py 262-283).
RECIPES = {
    "vit": {"optim": optim("adamw", 1.5e-4, 0.1, 40, decay_norm_bias=True),
            "views": {**TWO_VIEWS, **section(recipe="byol")},
            "moco-v3": section(temperature=0.2, proj_layers=3, pred_last_bn=True, momentum=0.99)},
    "resnet": {"optim": optim("lars", 0.6, 1e-6, 10),
               "views": {**TWO_VIEWS, **section(recipe="byol", global_scale=(0.2, 1.0))},
               "moco-v3": section(temperature=1.0, proj_layers=2, pred_last_bn=False, momentum=0.99)},
}


class MoCoV3(Method):
    name = "moco-v3"
    config_class = MoCoV3Config
    recipes = RECIPES

    def __init__(self, backbone: nn.Module, cfg: MoCoV3Config, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        # moco-v3 vits.py freezes the patchify projection only; a conv stem trains (its vit_conv_* models)
        if cfg.freeze_patch_embed and isinstance(getattr(backbone, "patch_embed", None), PatchEmbed):
            backbone.patch_embed.requires_grad_(False)
        bn = cfg.head_bn
        self.projector = mlp(backbone.embed_dim, cfg.proj_hidden_dim, cfg.out_dim, cfg.proj_layers,
                             batch_norm=bn, last_bn=bn, act="relu")
        self.predictor = mlp(cfg.out_dim, cfg.pred_hidden_dim, cfg.out_dim, 2, batch_norm=bn,
                             last_bn=bn and cfg.pred_last_bn, act="relu")
        self.momentum_encoder = momentum_copy(backbone=backbone, projector=self.projector)

    def setup(self, total_steps: int, steps_per_epoch: int) -> None:
        super().setup(total_steps, steps_per_epoch)
        self.momentum = cosine_schedule(self.cfg.momentum, 1.0, total_steps)

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        # One forward per view, as the official code (BatchNorm statistics per view). With per-process
        # BatchNorm (CPU processes, --run.sync-bn false) the keys use MoCo v2's shuffled BN, since then a
        # query and its positive key would share statistics that the other processes' keys lack.
        h = [self.backbone(v) for v in views[:2]]  # 2 x (B, D)
        z = [self.projector(x) for x in h]  # 2 x (B, d)
        q = [self.predictor(zi) for zi in z]  # 2 x (B, d)
        k = [momentum_forward(self.momentum_encoder, v) for v in views[:2]]  # 2 x (B, d), no gradient
        t = self.cfg.temperature
        loss = ctr(q[0], k[1], t) + ctr(q[1], k[0], t)
        return loss, collapse_logs(torch.cat(z), backbone=torch.cat(h)) if diagnostics else {}

    @torch.no_grad()
    def on_after_step(self, step: int) -> None:
        m = float(self.momentum[step])
        ema_update(self.momentum_encoder["backbone"], self.backbone, m)
        ema_update(self.momentum_encoder["projector"], self.projector, m)

    def schedule_values(self, step: int) -> dict[str, float]:
        return {"momentum": float(self.momentum[step])}
