"""SimCLR (Chen et al., 2020): a projection MLP and the NT-Xent loss over the 2N views of a batch.

Each view's positive is the other view of the same image; the other 2N-2 views are negatives. With several
processes the candidates are gathered from all of them with gradients flowing back (`gather_with_grad`),
so the negatives are those of the whole global batch, as in the official code; the positives' indices are
offset by the process rank.

With more than two views per image (`--views.n-local`, multi-crop as in SwAV's "SimCLR + multi-crop"),
every view is an anchor whose positives are all other views of its image, as solo-learn's
simclr_loss_func: l_i = -log sum_{p in P(i)} exp(s_ip/T) / sum_{k != i} exp(s_ik/T). With two views this is
the paper's NT-Xent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics.collapse import collapse_logs
from selfsup.methods.base import TWO_VIEWS, Method, forward_concat_by_size
from selfsup.methods.distributed import gather_with_grad, rank
from selfsup.methods.info_nce import info_nce
from selfsup.methods.precision import fp32
from selfsup.methods.recipe import optim, section
from selfsup.models.heads import mlp
from selfsup.options import opt


@dataclass
class SimCLRConfig:
    proj_hidden_dim: int = opt(2048, "Hidden width of the projection MLP.", paper=2048, low=1)
    proj_output_dim: int = opt(128, "Output width of the projection MLP (the loss's space).", paper=128, low=1)
    proj_layers: int = opt(2, "Linear layers in the projection MLP (SimCLR v2 uses 3).", paper=2, low=1)
    proj_bn: bool = opt(True, "BatchNorm in the projection MLP (per process on CPU; synchronised on GPUs).",
                        paper=True)
    temperature: float = opt(0.2, "NT-Xent temperature. The paper's 0.1 is tuned for batch 4096 with LARS; "
                             "0.2-0.5 suits small batches and short runs (solo-learn's CIFAR recipes use "
                             "0.2).", paper=0.1, above=0)
    decoupled: bool = opt(False, "Decoupled contrastive loss (DCL, Yeh et al., 2022): the positive is left out "
                          "of the denominator, which speeds up learning with small batches and short runs.",
                          paper=False)


@fp32
def nt_xent(z: torch.Tensor, temperature: float, n_views: int = 2, decoupled: bool = False) -> torch.Tensor:
    """NT-Xent of this process's (V*B, d) embeddings, views stacked [z1; ...; zV], against all processes'
    views; each view's positives are the other V-1 views of its image. `decoupled`: DCL's loss, the
    positives left out of the denominator (see info_nce)."""
    n = z.shape[0]
    candidates = gather_with_grad(z)  # (world*V*B, d), rank-ordered
    own = torch.arange(n, device=z.device) + rank() * n
    if n_views == 2:
        positive = (torch.arange(n, device=z.device) + n // 2) % n + rank() * n
        return info_nce(z, candidates, positive, temperature, exclude=own, decoupled=decoupled)
    b = n // n_views
    column = torch.arange(candidates.shape[0], device=z.device)
    image = column // n * b + column % n % b  # (world*V*B,) global image index of each candidate
    logits = F.normalize(z, dim=-1) @ F.normalize(candidates, dim=-1).T / temperature  # (V*B, world*V*B)
    logits = logits.float().scatter(1, own[:, None], float("-inf"))
    positives = image[own][:, None] == image[None, :]  # includes the anchor itself, already at -inf
    denominator = logits.masked_fill(positives, float("-inf")) if decoupled else logits
    return (denominator.logsumexp(1) - logits.masked_fill(~positives, float("-inf")).logsumexp(1)).mean()


# google-research/simclr: LARS (model_util.py 95-100, trust coefficient 0.001, biases and BatchNorm
# excluded from decay and adaptation), lr 0.3 per 256 with linear scaling and 10 warm-up epochs (run.py
# 43-52), cosine to 0, weight decay 1e-6 (SimCLR v1 paper, App. B.9; the v2 code's run.py defaults to 1e-4
# with its 3-layer head). Views: data_util.py's strength-1 colour distortion and blur p 0.5 on both views.
RECIPES = {"any": {"optim": optim("lars", 0.3, 1e-6, 10), "views": {**TWO_VIEWS, **section(recipe="simclr")}}}


class SimCLR(Method):
    name = "simclr"
    config_class = SimCLRConfig
    recipes = RECIPES
    multicrop = True  # the paper's two views by default (RECIPES); local crops are extra positives

    def __init__(self, backbone: nn.Module, cfg: SimCLRConfig, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        self.projector = mlp(backbone.embed_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, cfg.proj_layers,
                             batch_norm=cfg.proj_bn, act="relu")

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        # One batch of 2B views through backbone and projector, as the official code (model.py concatenates
        # the views before the encoder): BatchNorm statistics over both views.
        h = forward_concat_by_size(self.backbone, views)  # (V*B, D)
        z = self.projector(h)  # (V*B, d): view 1, view 2, ...
        loss = nt_xent(z, self.cfg.temperature, len(views), self.cfg.decoupled)
        global_h = h[: self.n_global * len(views[0])]  # the backbone features of the global crops
        return loss, collapse_logs(z, backbone=global_h) if diagnostics else {}
