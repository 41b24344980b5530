"""MoCo v2 (Chen, Fan, Girshick & He, 2020): a momentum key encoder and a queue of past keys as negatives.

As in facebookresearch/moco moco/builder.py and main_moco.py (`--mlp --moco-t 0.2 --aug-plus --cos`).

The query encoder is the backbone and a 2-layer MLP head; the key encoder is its EMA copy. A query's
positive is the key of the other view of the same image; its negatives are a FIFO queue of the keys of
earlier batches (gathered from every process), so their number does not depend on the batch size:
    l_i = -log exp(q_i . k_i / T) / (exp(q_i . k_i / T) + sum_j exp(q_i . n_j / T)),   n_j in the queue.
Keys are computed without gradient; when the backbone has per-process BatchNorm and several processes
train, the key encoder sees a batch shuffled across processes (MoCo's shuffled BN), so that statistics
shared by a query and its positive key cannot single the key out from the queue's. The query encoder is
the one evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import TWO_VIEWS, Method
from selfsup.methods.distributed import gather
from selfsup.methods.momentum import ema_update, momentum_copy
from selfsup.methods.precision import fp32
from selfsup.methods.recipe import optim, section
from selfsup.methods.shuffled_bn import momentum_forward
from selfsup.models.heads import mlp
from selfsup.options import opt
from selfsup.schedules import cosine_schedule


@dataclass
class MoCoV2Config:
    proj_hidden_dim: int = opt(2048, "Hidden width of the 2-layer MLP head (ReLU; the paper's equals the "
                               "ResNet-50 width).", paper=2048, low=1)
    proj_bn: bool = opt(True, "BatchNorm after the head's hidden layer (SimCLR's head; MoCo v2's has none). "
                        "ViT outputs start nearly identical and the paper's head keeps them so: every key "
                        "looks alike and the loss stays at log(K+1) (vit-cpu, digits, queue 512, 440 steps: k-NN 48% "
                        "without, 72% with, 46% at initialisation). Try False with ResNets, whose BatchNorm "
                        "already spreads the outputs.", paper=False)
    proj_output_dim: int = opt(128, "Output width of the head: the space of queries, keys and the queue.",
                               paper=128, low=1)
    queue_size: int = opt(4096, "Negatives K: the FIFO queue of past keys (any size; the pointer wraps). More "
                          "negatives help while the keys stay recent, but keep K well below the number of "
                          "training images (twice that with the symmetric loss), or each image's own stale "
                          "key is among its negatives. The paper's 65536 is 5% of ImageNet; 4096 suits "
                          "60k-image data (16 batches of 256); use ~512 for a 1-2k-image set.", paper=65536, low=1)
    temperature: float = opt(0.2, "Softmax temperature T (MoCo v1 used 0.07). Lower weights the hardest "
                             "negatives more.", paper=0.2, above=0)
    momentum: float = opt(0.99, "EMA momentum m of the key encoder. The paper's 0.999 averages over ~1000 "
                          "steps, more than a CPU run of a few hundred: the keys would come from a nearly "
                          "untrained encoder. 0.99 (~100 steps) suits short runs; MoCo's ablation finds it "
                          "about a point below 0.999 on ImageNet and m=0 failing.", paper=0.999, low=0, high=1)
    momentum_cosine: bool = opt(False, "Raise the momentum from `momentum` to 1 with a cosine over training "
                                "(BYOL, MoCo v3) instead of keeping it constant (MoCo v2).", paper=False)
    symmetric: bool = opt(True, "Also use view 2 as the query of view 1's key, averaging the two losses and "
                          "enqueuing both views' keys (solo-learn's MoCo v2+, MoCo v3). Each image then gives "
                          "two training pairs per step for twice the encoder compute, which helps short runs. "
                          "False is the paper's one-way loss.", paper=False)


@fp32
def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """q (B, d) queries, k (B, d) their positive keys, queue (K, d) negatives -> mean InfoNCE.

    Written out rather than with `info_nce`: each query has its own positive and only the queue as
    negatives (the other in-batch keys are not candidates), as in the official code.
    """
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    pos = (q * k).sum(-1, keepdim=True)  # (B, 1)
    neg = q @ F.normalize(queue, dim=-1).T  # (B, K)
    logits = torch.cat([pos, neg], dim=1).float() / temperature  # (B, 1+K); the positive is column 0
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


# facebookresearch/moco main_moco.py (commit 7397dfe) with README's `--mlp --moco-t 0.2 --aug-plus --cos`:
# SGD on every parameter (weight decay 1e-4 on norms and biases too, lines 291-296), lr 0.03 at batch 256
# (lines 79-85, 97-104), no warm-up, cosine to 0 (lines 489-492), aug+ views with crops of 0.2-1 (326-338).
# Per-process BatchNorm with shuffled keys, as the paper: SyncBatchNorm would give the query and its
# positive key statistics of the same images, which the queue's keys (older batches) lack.
RECIPES = {"any": {"optim": optim("sgd", 0.03, 1e-4, 0, decay_norm_bias=True),
                   "views": {**TWO_VIEWS, **section(recipe="mocov2", global_scale=(0.2, 1.0))},
                   "run": section(sync_bn=False)}}


class MoCoV2(Method):
    name = "moco-v2"
    config_class = MoCoV2Config
    recipes = RECIPES

    def __init__(self, backbone: nn.Module, cfg: MoCoV2Config, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        if cfg.queue_size < 1:
            raise ValueError(f"moco-v2 queue_size must be positive, got {cfg.queue_size}")
        self.head = mlp(backbone.embed_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, 2,
                        batch_norm=cfg.proj_bn, act="relu")
        self.key_encoder = momentum_copy(backbone=backbone, head=self.head)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.proj_output_dim), dim=-1))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self._new_keys: torch.Tensor | None = None  # gathered in forward, enqueued after the step

    def setup(self, total_steps: int, steps_per_epoch: int) -> None:
        super().setup(total_steps, steps_per_epoch)
        m = self.cfg.momentum
        self.momentum = cosine_schedule(m, 1.0, total_steps) if self.cfg.momentum_cosine else \
            np.full(total_steps, m)

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, d) L2-normalised keys of the key encoder, without gradient."""
        return F.normalize(momentum_forward(self.key_encoder, x), dim=-1)

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        pairs = [(0, 1), (1, 0)] if self.cfg.symmetric else [(0, 1)]  # (query view, key view)
        h = [self.backbone(views[i]) for i, _ in pairs]  # each (B, D)
        q = [self.head(x) for x in h]  # each (B, d)
        k = [self.keys(views[j]) for _, j in pairs]  # each (B, d), no gradient
        loss = sum(moco_loss(qi, ki, self.queue, self.cfg.temperature) for qi, ki in zip(q, k, strict=True))
        # Enqueued after the step: all processes' keys, view by view, rank order within a view (P*world*B, d)
        self._new_keys = gather(torch.stack(k, 1)).transpose(0, 1).flatten(0, 1)
        return loss / len(pairs), collapse_logs(torch.cat(q), backbone=torch.cat(h)) if diagnostics else {}

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Overwrite the oldest entries with `keys` (n, d), wrapping around; only the newest K if n > K."""
        size = self.queue.shape[0]
        keys = keys[-size:]
        idx = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % size  # on the device: no host sync
        self.queue.index_copy_(0, idx, keys.to(self.queue.dtype))
        self.queue_ptr.add_(len(keys)).remainder_(size)

    @torch.no_grad()
    def on_after_step(self, step: int) -> None:
        m = float(self.momentum[step])
        ema_update(self.key_encoder["backbone"], self.backbone, m)
        ema_update(self.key_encoder["head"], self.head, m)
        if self._new_keys is not None:
            self.enqueue(self._new_keys)
            self._new_keys = None

    def schedule_values(self, step: int) -> dict[str, float]:
        return {"momentum": float(self.momentum[step])}
