"""SwAV (Caron et al., 2020): swapped prediction of online cluster codes, as in facebookresearch/swav main_swav.py.

Every crop is projected (MLP, L2-normalised) and scored against K unit-norm prototypes. The codes of the
global crops are computed under no_grad by Sinkhorn-Knopp, which spreads the batch equally over the
prototypes (this equipartition is what prevents collapse); every crop then predicts, by a softmax over its
own scores, the codes of each *other* global crop of the same image.

Distributed: Sinkhorn's per-prototype sums are all-reduced, so the codes are those of the concatenated batch.
The optional queue holds past projections of the global crops; their scores only enlarge the Sinkhorn
problem (better codes for small batches), their codes are dropped. The official code keeps one queue per
process of its own embeddings; here every process keeps the same queue of the gathered embeddings and
feeds Sinkhorn a disjoint 1/world share of it (rows rank::world). The union Sinkhorn sees is the official
one, so the codes are too, but the buffer is identical on every process: rank 0's checkpoint resumes it
exactly and DDP's buffer broadcast cannot overwrite it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import Method, forward_concat_by_size
from selfsup.methods.distributed import all_reduce_sum, gather, rank, world_size
from selfsup.methods.precision import fp32
from selfsup.methods.recipe import optim, section
from selfsup.models.heads import mlp
from selfsup.options import opt


@dataclass
class SwAVConfig:
    proj_hidden_dim: int = opt(2048, "Hidden width of the 2-layer projection MLP.", paper=2048, low=1)
    proj_output_dim: int = opt(128, "Width of the L2-normalised projections and prototypes (feat_dim).",
                               paper=128, low=1)
    head_bn: bool = opt(True, "BatchNorm in the projection MLP (per process on CPU; synchronised on GPUs).",
                        paper=True)
    n_prototypes: int = opt(300, "Prototypes K. The paper's 3000 is for ImageNet's 1000 classes and is "
                            "robust from 3k to 30k there; the CPU preset uses 300 for 10-class data and "
                            "short runs. Keep K at least proj_output_dim: with fewer prototypes than "
                            "dimensions a projection can be equidistant from all of them (uniform "
                            "predictions and codes, loss log K), and K=100 collapsed faster on digits.",
                            paper=3000, low=1)
    temperature: float = opt(0.1, "Softmax temperature of the swapped prediction.", paper=0.1, above=0)
    epsilon: float = opt(0.05, "Sinkhorn entropic regularisation: lower gives sharper codes. If the loss "
                         "does not go down, try 0.03 (with sinkhorn_float64 below 0.03).", paper=0.05, above=0)
    sinkhorn_iterations: int = opt(3, "Sinkhorn-Knopp iterations; 3 suffices.", paper=3, low=1)
    sinkhorn_float64: bool = opt(False, "Sinkhorn in float64 instead of float32; only needed for a very "
                                 "small epsilon.", paper=False)
    queue_length: int = opt(0, "Past projections added to Sinkhorn (0 = no queue). The paper uses 3840 "
                            "when the batch (256) is small next to K (3000), 0 at batch 4096. Off on CPU: "
                            "in short runs the network changes too fast for stored embeddings to stay "
                            "relevant. Consider it when K is well above the batch.", paper=3840, low=0)
    queue_start_epochs: float = opt(1.0, "Epoch from which the queue is filled; it is used once full. The "
                                    "paper's 15 (of 200-800 epochs) would never come in a CPU run of a few "
                                    "epochs.", paper=15, low=0)
    freeze_prototypes_iters: int = opt(50, "Steps at the start during which the prototypes are not updated. "
                                       "The paper's 313 is one ImageNet epoch at batch 4096; the CPU preset "
                                       "uses 50 (~5% of a 1000-step run). Raise it if the loss does not go "
                                       "down at first.", paper=313, low=0)


# facebookresearch/swav scripts/swav_800ep_pretrain.sh: SGD + LARC (main_swav.py 171-177: trust
# coefficient 0.001, no clipping, weight decay and adaptation on every parameter), base lr 4.8 at batch
# 4096 (0.3 per 256) to a final 0.0048, weight decay 1e-6, 10 warm-up epochs (the script starts them at
# 0.3, here at 0), 2x224 crops of 0.14-1 and 6x96 of 0.05-0.14; views with SimCLR's strength-1 colour
# distortion and blur p 0.5 on every crop (src/multicropdataset.py 37, 64-92).
RECIPES = {"any": {"optim": optim("lars", 0.3, 1e-6, 10, min_lr=0.0048, decay_norm_bias=True),
                   "views": section(recipe="simclr", n_local=6, global_scale=(0.14, 1.0),
                                    local_scale=(0.05, 0.14))}}


def _all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


@torch.no_grad()
@fp32
def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """Sinkhorn-Knopp codes of scores (..., N, K), one problem per leading index, in scores' dtype.

    Alternately rescales exp(scores / epsilon) so that every prototype gets the same total mass over the
    samples of all processes (sums all-reduced) and every sample sums to 1, ending with the samples: the
    returned rows sum to 1 and, at convergence, the columns to N*world/K. Rescaling a whole row or column
    is cancelled by the normalisation that follows, so the official code's factors 1/K, 1/B and its initial
    division by the total are left out, and each prototype's (global) maximum is subtracted before exp,
    which keeps exp from overflowing in float32 without changing the result.
    """
    s = scores / epsilon
    q = torch.exp(s - _all_reduce_max(s.amax(dim=-2, keepdim=True)))  # (..., N, K), each column's max is 1
    for _ in range(iterations):
        q = q / all_reduce_sum(q.sum(dim=-2, keepdim=True))  # prototypes: equal mass over the global batch
        q = q / q.sum(dim=-1, keepdim=True)  # samples: each a distribution over prototypes
    return q / q.sum(dim=-1, keepdim=True)  # a no-op after one iteration or more


@fp32
def swapped_prediction(scores: torch.Tensor, codes: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over (assignment crop i, other crop v != i) of -mean_b sum_k q_i log softmax(p_v / T).

    scores: (V*B, K) prototype scores of all crops, view by view; codes: (G, B, K) of the first G crops."""
    g, b, k = codes.shape
    logp = F.log_softmax(scores.float() / temperature, dim=-1).view(-1, b, k)  # (V, B, K)
    cross = -torch.einsum("ibk,vbk->iv", codes.float(), logp) / b  # (G, V)
    pairs = ~torch.eye(g, logp.shape[0], dtype=torch.bool, device=cross.device)
    return (cross * pairs).sum() / pairs.sum()  # no boolean indexing: its output size is a device sync


class SwAV(Method):
    name = "swav"
    config_class = SwAVConfig
    multicrop = True
    recipes = RECIPES

    def __init__(self, backbone: nn.Module, cfg: SwAVConfig, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        self.projector = mlp(backbone.embed_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, 2,
                             batch_norm=cfg.head_bn, act="relu")
        self.prototypes = nn.Linear(cfg.proj_output_dim, cfg.n_prototypes, bias=False)
        self.normalize_prototypes()
        # (G, L, d) newest first; zero rows are empty. A buffer, so checkpoints carry it.
        self.register_buffer("queue", torch.zeros(n_global, cfg.queue_length, cfg.proj_output_dim))
        self._pending: torch.Tensor | None = None  # this step's assignment projections, for the queue
        self._filled: int | None = None  # queue slots filled, once known (queue_full); unknown after a load
        self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_filled", None))

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        w = self.prototypes.weight  # (K, d)
        w.copy_(F.normalize(w, dim=1))

    def queue_full(self) -> bool:
        """Whether the queue's last slot holds a feature (the official `use_the_queue`). Read from the queue once
        (a host sync; after a resume it holds the checkpoint's), then followed on the host as steps fill it."""
        if self.queue.shape[1] == 0:
            return False
        if self._filled is None:  # the FIFO fills from the front: its filled slots are the first ones
            self._filled = int(self.queue.any(dim=-1).any(dim=0).sum())
        return self._filled >= self.queue.shape[1]

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        c, g, b = self.cfg, self.n_global, views[0].shape[0]
        feats = forward_concat_by_size(self.backbone, views)  # (V*B, D)
        z = F.normalize(self.projector(feats), dim=-1)  # (V*B, d)
        scores = self.prototypes(z)  # (V*B, K)
        dtype = torch.float64 if c.sinkhorn_float64 else torch.float32
        with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
            za = z[: g * b].detach().view(g, b, -1)  # (G, B, d) the assignment (global) crops
            w = self.prototypes.weight.to(dtype)  # (K, d)
            s = za.to(dtype) @ w.T  # (G, B, K)
            if self.queue_full():
                mine = self.queue[:, rank()::world_size()].to(dtype)  # (G, L/world, d)
                s = torch.cat([mine @ w.T, s], dim=1)  # (G, L/world + B, K)
            codes = sinkhorn(s, c.epsilon, c.sinkhorn_iterations)[:, -b:]  # (G, B, K), queue codes dropped
        self._pending = za.float().transpose(0, 1) if c.queue_length else None  # (B, G, d)
        loss = swapped_prediction(scores, codes, c.temperature)
        return loss, self._diagnostics(z, feats[: g * b], s[:, -b:], codes) if diagnostics else {}

    @torch.no_grad()
    def _diagnostics(self, z: torch.Tensor, feats: torch.Tensor, s: torch.Tensor, codes: torch.Tensor
                     ) -> dict[str, float]:
        """`code_entropy`: mean entropy of a sample's codes; near log K means the codes no longer tell
        images apart (collapse), near 0 hard assignments. `proto_used`: fraction of prototypes that are the
        nearest one of some global crop in the global batch; a small fraction means the projections
        crowd into a few prototypes (at most n_global x global batch / K). (The batch-mean code distribution is
        uniform by construction, so its entropy says nothing.) `feats`: the global crops' backbone features."""
        k = s.shape[-1]
        nearest = torch.bincount(s.argmax(-1).flatten(), minlength=k).float()  # (K,)
        ent = -(codes * codes.clamp_min(1e-30).log()).sum(-1).mean()
        return {**collapse_logs(z, backbone=feats), "code_entropy": float(ent), "log_K": math.log(k),
                "proto_used": float((all_reduce_sum(nearest) > 0).float().mean())}

    def on_after_backward(self, step: int) -> None:
        if step < self.cfg.freeze_prototypes_iters:
            self.prototypes.weight.grad = None

    @torch.no_grad()
    def on_after_step(self, step: int) -> None:
        # The official code normalises at the start of each step; after the step (and at construction)
        # is the same sequence, and checkpoints then hold unit-norm prototypes.
        self.normalize_prototypes()
        if self._pending is not None and step >= int(self.cfg.queue_start_epochs * self.steps_per_epoch):
            new = gather(self._pending).transpose(0, 1)  # (G, world*B, d), rank order
            self.queue.copy_(torch.cat([new, self.queue], dim=1)[:, : self.queue.shape[1]])  # FIFO
            if self._filled is not None:
                self._filled += new.shape[1]
        self._pending = None
