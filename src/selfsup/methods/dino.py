"""DINO: self-distillation with no labels (Caron et al., 2021), as in facebookresearch/dino main_dino.py.

The student sees all views (global + local); the teacher, an EMA of the student, sees the global views.
Teacher outputs are centred (EMA centre; or Sinkhorn-Knopp, DINOv2's option) and sharpened (low temperature);
the loss is the cross-entropy between teacher and student distributions over all (teacher global view, student
view) pairs except a view with itself.
The ablations of the paper's Sec. 5 and the thesis's Sec. 5.4 are options: the teacher rule (`teacher`,
methods/teachers.py), `centering` (EMA centre, Sinkhorn-Knopp or none), `sharpening`, the loss (`loss`: ce or
mse) and a student `predictor`.
Logged per logging step: h(P_t), KL(P_t || P_s) and H = h + KL (diagnostics/distillation.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics import batch_entropy, collapse_logs, entropy_split
from selfsup.methods.base import Method, forward_concat_by_size
from selfsup.methods.distributed import all_reduce_mean
from selfsup.methods.momentum import momentum_copy
from selfsup.methods.precision import fp32
from selfsup.methods.recipe import optim, section
from selfsup.methods.swav import sinkhorn
from selfsup.methods.teachers import TEACHERS, TeacherUpdate
from selfsup.models.heads import DINOHead, mlp
from selfsup.options import opt
from selfsup.schedules import cosine_schedule, linear_warmup_constant

# How the teacher's outputs are centred: EMA centre (DINO), Sinkhorn-Knopp (DINOv2's train.centering
# "sinkhorn_knopp", dinov2/loss/dino_clstoken_loss.py sinkhorn_knopp_teacher) or not at all (the collapse ablation).
CENTERINGS = ("centering", "sinkhorn_knopp", "none")
SINKHORN_ITERATIONS = 3  # dino_clstoken_loss.py and ibot_patch_loss.py: n_iterations=3


@dataclass
class DinoConfig:
    out_dim: int = opt(4096, "Prototypes K in the last head layer. Larger helps on complex data; "
                       "cost grows linearly. The CPU preset uses 4096 on 10-class data.", paper=65536, low=1)
    hidden_dim: int = opt(2048, "Hidden width of the 3-layer head MLP.", paper=2048, low=1)
    bottleneck_dim: int = opt(256, "Bottleneck before the weight-normalised last layer.", paper=256, low=1)
    norm_last_layer: bool = opt(True, "Fix the norm of the last layer's weights. True is more stable; "
                                "False can give better ViT-S results but may need a lower teacher momentum.",
                                paper=True)
    use_bn_in_head: bool = opt(False, "BatchNorm in the head MLP (False for ViT, as the paper).", paper=False)
    momentum_teacher: float = opt(0.996, "Base EMA momentum of the teacher, raised to 1 with a cosine. "
                                  "Use 0.9995 with batches of 256 and 0.99 for short runs.", paper=0.996, low=0, high=1)
    teacher_temp: float = opt(0.04, "Final teacher temperature. 0.04 works well; above 0.07 training "
                              "tends to be unstable.", paper=0.04, above=0)
    warmup_teacher_temp: float = opt(0.04, "Initial teacher temperature; lower it (0.04) if the loss "
                                     "does not decrease at first.", paper=0.04, above=0)
    warmup_teacher_temp_epochs: float = opt(0.0, "Epochs of linear teacher-temperature warm-up.", paper=0, low=0)
    student_temp: float = opt(0.1, "Student temperature.", paper=0.1, above=0)
    center_momentum: float = opt(0.9, "EMA momentum of the centre of the teacher outputs.", paper=0.9, low=0, high=1)
    freeze_last_layer: float = opt(1.0, "Epochs during which the head's last layer is not updated; "
                                   "helps the first epoch. Increase if the loss does not decrease.", paper=1, low=0)
    # Ablation switches (Caron et al. 2021, Table 7 and Sec. 5.2-5.3; the thesis's table 5.2, figs. 5.9-5.10).
    teacher: str = opt("momentum", "How the teacher follows the student: momentum (EMA, --dino.momentum-teacher), "
                       "copy (the student itself, i.e. momentum off: collapses, k-NN 0.1% in the paper), "
                       "previous-iteration (the student one step behind: collapses too) or previous-epoch (the "
                       "student of the last epoch boundary: works, 66.5% against momentum's 72.7%). Keep "
                       "momentum except to study the teacher.", paper="momentum", choices=TEACHERS)
    centering: str = opt("centering", "How the teacher's outputs are kept from collapsing to one prototype: "
                         "centering (subtract an EMA centre of the teacher's outputs, --dino.center-momentum; "
                         "DINO's), sinkhorn_knopp (3 Sinkhorn-Knopp iterations turn the teacher's outputs over the "
                         "batch into assignments that use every prototype equally, as SwAV's codes: DINOv2's "
                         "option, its ViT-L/g and ViT-g recipes; no centre is kept) or none (the centre stays 0 and "
                         "one prototype takes every image: teacher entropy -> 0, KL -> 0; only to study collapse).",
                         paper="centering", choices=CENTERINGS)
    sharpening: bool = opt(True, "Sharpen the teacher with its own temperature (--dino.teacher-temp). Off, the "
                           "teacher uses --dino.student-temp and its outputs go uniform (teacher entropy -> "
                           "log K, KL -> 0). Only off to study collapse.", paper=True)
    loss: str = opt("ce", "Loss between teacher and student distributions: ce (cross-entropy, DINO's) or mse "
                    "(squared distance of the softmax distributions; the paper's ablation: k-NN 52.5% against "
                    "72.7%).", paper="ce", choices=("ce", "mse"))
    predictor: bool = opt(False, "A BYOL-style predictor on the student only: a 2-layer MLP (--dino.hidden-dim "
                          "wide) on the head's bottleneck output before its normalised last layer. The paper "
                          "finds it barely matters for DINO (71.7% against 72.7%), unlike for BYOL.", paper=False)


# facebookresearch/dino: main_dino.py's defaults for ViTs (lines 82-101: AdamW, lr 5e-4 per 256, weight decay
# 0.04 -> 0.4, 10 warm-up epochs, clip 3.0, min lr 1e-6), and the README's ResNet-50 command (line 207:
# --optimizer sgd --lr 0.03 --weight_decay 1e-4 --weight_decay_end 1e-4 --global_crops_scale 0.14 1
# --local_crops_scale 0.05 0.14). Both exclude biases and norms from weight decay (utils.get_params_groups).
RECIPES = {
    "vit": {"optim": optim("adamw", 5e-4, 0.04, 10, weight_decay_end=0.4, min_lr=1e-6, clip_grad=3.0),
            "views": section(recipe="dino")},
    "resnet": {"optim": optim("sgd", 0.03, 1e-4, 10, min_lr=1e-6, clip_grad=3.0),
               "views": section(recipe="dino", global_scale=(0.14, 1.0), local_scale=(0.05, 0.14))},
}


def teacher_probabilities(teacher_out: torch.Tensor, center: torch.Tensor, temp: float, centering: str
                          ) -> torch.Tensor:
    """Teacher logits (N, K) -> probabilities (N, K), without gradient: softmax((t - centre) / temp) for
    "centering" and "none" (whose centre stays 0), or the Sinkhorn-Knopp assignment of exp(t / temp) over the
    N rows of all processes for "sinkhorn_knopp" (DINOv2's sinkhorn_knopp_teacher; swav.py's `sinkhorn`,
    which leaves out factors that the normalisations cancel)."""
    t = teacher_out.detach().float()
    if centering == "sinkhorn_knopp":
        return sinkhorn(t, temp, SINKHORN_ITERATIONS)
    return F.softmax((t - center) / temp, dim=-1)


class DINOLoss(nn.Module):
    """Cross-entropy (or, with loss="mse", squared distance) between centred+sharpened teacher and student
    distributions, with an EMA centre (or Sinkhorn-Knopp in its place: `centering`)."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9,
                 loss: str = "ce", centering: str = "centering") -> None:
        super().__init__()
        if centering not in CENTERINGS:
            raise ValueError(f"--dino.centering {centering!r}: choose one of {', '.join(CENTERINGS)}")
        self.student_temp, self.center_momentum, self.loss = student_temp, center_momentum, loss
        self.centering = centering
        self.register_buffer("center", torch.zeros(1, out_dim))

    @fp32
    def forward(self, student_out: torch.Tensor, teacher_out: torch.Tensor, n_views: int,
                teacher_temp: float) -> torch.Tensor:
        """student_out: (n_views*B, K), teacher_out: (n_global*B, K), both ordered view by view; in float32
        under any autocast (methods/precision.py: the mse form qq + pp - 2 q.p cancels in bf16)."""
        return self.pair_loss(*self.distributions(student_out, teacher_out, n_views, teacher_temp))

    def distributions(self, student_out: torch.Tensor, teacher_out: torch.Tensor, n_views: int,
                      teacher_temp: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher probabilities q (G, B, K), student log-probabilities logp (V, B, K) and the (G, V) mask of
        the pairs in the loss (every pair but a view with itself)."""
        n_global = teacher_out.shape[0] * n_views // student_out.shape[0]
        logp = F.log_softmax(student_out.float() / self.student_temp, dim=-1).unflatten(0, (n_views, -1))
        q = teacher_probabilities(teacher_out, self.center, teacher_temp, self.centering)  # (G*B, K)
        pairs = ~torch.eye(n_global, n_views, dtype=torch.bool, device=q.device)
        return q.unflatten(0, (n_global, -1)), logp, pairs

    def pair_loss(self, q: torch.Tensor, logp: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """Mean over the pairs of the batch-mean cross-entropy or, for mse, of sum_k (q_k - p_k)^2."""
        b = q.shape[1]
        if self.loss == "ce":
            cross = -torch.einsum("ibk,vbk->iv", q, logp) / b  # (G, V)
        else:  # |q - p|^2 = |q|^2 + |p|^2 - 2 q.p, without the (G, V, B, K) difference tensor
            p = logp.exp()  # (V, B, K)
            qq, pp = q.square().sum(-1).mean(-1), p.square().sum(-1).mean(-1)  # (G,), (V,)
            cross = qq[:, None] + pp[None] - 2 * torch.einsum("ibk,vbk->iv", q, p) / b  # (G, V)
        return (cross * pairs).sum() / pairs.sum()  # no boolean indexing: its output size is a device sync

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """centre <- m * centre + (1 - m) * mean over all processes of teacher_out (n, K) (or its mean (1, K))."""
        batch_center = all_reduce_mean(teacher_out.float().mean(dim=0, keepdim=True))
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)


class DINO(Method):
    name = "dino"
    config_class = DinoConfig
    multicrop = True
    recipes = RECIPES

    def __init__(self, backbone: nn.Module, cfg: DinoConfig, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        head = DINOHead(backbone.embed_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim,
                        use_bn=cfg.use_bn_in_head, norm_last_layer=cfg.norm_last_layer)
        self.head = head
        self.teacher = momentum_copy(backbone=backbone, head=head)
        self.predictor = mlp(cfg.bottleneck_dim, cfg.hidden_dim, cfg.bottleneck_dim, 2) if cfg.predictor else None
        self.loss_fn = DINOLoss(cfg.out_dim, cfg.student_temp, cfg.center_momentum, cfg.loss, cfg.centering)
        self._batch_center: torch.Tensor | None = None  # set by forward, moves the centre in on_after_step

    def setup(self, total_steps: int, steps_per_epoch: int) -> None:
        super().setup(total_steps, steps_per_epoch)
        c = self.cfg
        self.momentum = cosine_schedule(c.momentum_teacher, 1.0, total_steps)
        self.teacher_update = TeacherUpdate(c.teacher, self.momentum, steps_per_epoch)
        warm = int(c.warmup_teacher_temp_epochs * steps_per_epoch)
        start, end = (c.warmup_teacher_temp, c.teacher_temp) if c.sharpening else (c.student_temp, c.student_temp)
        self.teacher_temp = linear_warmup_constant(start, end, total_steps, warm)
        self.freeze_steps = int(c.freeze_last_layer * steps_per_epoch)

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        n_global = self.n_global
        with torch.no_grad():
            teacher_out = self.teacher["head"](self.teacher["backbone"](torch.cat(views[:n_global])))
        feats = forward_concat_by_size(self.backbone, views)  # (V*B, D)
        student_out = self.head(feats, self.predictor)  # (V*B, K)
        temp = float(self.teacher_temp[step])
        q, logp, pairs = self.loss_fn.distributions(student_out, teacher_out, len(views), temp)
        loss = self.loss_fn.pair_loss(q, logp, pairs)
        # The centre moves in on_after_step, i.e. only once the step is known to be finite.
        self._batch_center = teacher_out.detach().float().mean(dim=0, keepdim=True)  # (1, K), this process's
        if not diagnostics:
            return loss, {}
        return loss, self.distillation_logs(q, logp, pairs, feats[:len(teacher_out)])

    @torch.no_grad()
    def distillation_logs(self, q: torch.Tensor, logp: torch.Tensor, pairs: torch.Tensor,
                          global_feats: torch.Tensor) -> dict[str, float]:
        """What DINO logs: the split h + KL of the loss (q (G, B, K), logp (V, B, K), pairs (G, V)), the teacher's
        batch entropy, and SimSiam's std and the rank of the student's backbone embeddings of the global crops
        (G*B, D) (the 1/sqrt(D) reference holds for embeddings, not for the K prototype logits, whose collapse
        modes entropy_split shows)."""
        return {**entropy_split(q, logp.detach(), pairs), "teacher_batch_entropy": batch_entropy(q),
                **collapse_logs(global_feats.detach())}

    def on_after_backward(self, step: int) -> None:
        if step < self.freeze_steps:  # DINO: keep the last layer fixed during the first epoch(s)
            for p in self.head.last_layer.parameters():
                p.grad = None
        self.teacher_update.before_step(self._pairs())

    @torch.no_grad()
    def on_after_step(self, step: int) -> None:
        if self._batch_center is not None and self.cfg.centering == "centering":
            self.loss_fn.update_center(self._batch_center)  # all-reduced mean over processes
        self._batch_center = None
        self.teacher_update.after_step(step, self._pairs())

    def _pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(teacher module, student module) pairs that the teacher rule updates."""
        return [(self.teacher["backbone"], self.backbone), (self.teacher["head"], self.head)]

    def eval_backbone(self) -> nn.Module:
        return self.teacher["backbone"]

    def schedule_values(self, step: int) -> dict[str, float]:
        momentum = {"momentum": float(self.momentum[step])} if self.cfg.teacher == "momentum" else {}
        return {**momentum, "teacher_temp": float(self.teacher_temp[step])}
