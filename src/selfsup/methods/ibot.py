"""iBOT: image BERT pre-training with an online tokenizer (Zhou et al., 2022), as bytedance/ibot main_ibot.py.

In the form DINOv2 gives it (facebookresearch/dinov2 dinov2/train/ssl_meta_arch.py, dinov2/loss/ibot_patch_loss.py):
DINO's self-distillation on the [CLS] token (methods/dino.py), plus masked image modelling with the EMA teacher as
the online tokenizer: in a share of the student's global crops, BEiT-style blocks of patches are replaced by a
learned mask token (before the position embeddings), and each masked patch token's head output is trained to match
the teacher's distribution for the same patch of the unmasked crop: a cross-entropy averaged over each image's
masked patches, then over the images (ibot_patch_loss.py forward_masked, masks_weight = 1 / masked patches of the
image; images without a mask count as 0, as main_ibot.py's per-image mean). The patch head is the [CLS] head
(`separate_head` off: iBOT's ViT-S/B recipes and DINOv2's default) or a head of its own (DINOv2's ViT-L/g). The
teacher's patch outputs are centred with an EMA centre of their own, or turned into Sinkhorn-Knopp assignments over
the masked tokens (`centering`, shared with the [CLS] loss).
DINO's ablation switches stay options: `teacher`, `centering` and `sharpening` act on both losses, `loss` (mse)
and `predictor` on the [CLS] loss only.
Logged besides DINO's diagnostics: the loss parts and the patch loss's split into h(P_t) + KL(P_t || P_s) over the
masked tokens, weighted as the loss (`patch_teacher_entropy`, `patch_teacher_student_kl`, `patch_cross_entropy`,
`patch_teacher_batch_entropy`), and the share of patches masked.

Where this follows DINOv2 rather than main_ibot.py: the masks are DINOv2's (methods/masking.py `dinov2_masks`:
half the images masked with ratios spread over 0.1-0.5; iBOT's `--pred_ratio 0 0.3 --pred_ratio_var 0 0.2` draws
the same range and share per image independently, with blocks of at least (min(h, w) // 3)^2 patches instead of
4); one teacher temperature for both losses (iBOT's patch temperature has its own schedule, equal to the [CLS]
one in its recipes: 0.04 -> 0.07 over 30 epochs); and the separate head is a whole DINO head (iBOT's unshared
head shares the MLP and has a last layer of its own). `--method ibot` centres the patch outputs with the mean of
all the teacher's patch tokens, as main_ibot.py (`center2`); DINOv2 with the masked ones only (methods/dinov2.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.diagnostics import weighted_entropy_split
from selfsup.methods.base import forward_concat_by_size
from selfsup.methods.dino import CENTERINGS, DINO, DinoConfig, teacher_probabilities
from selfsup.methods.distributed import all_reduce_sum
from selfsup.methods.koleo import koleo_loss
from selfsup.methods.masking import dinov2_masks
from selfsup.methods.momentum import momentum_copy
from selfsup.methods.recipe import optim, paper, section
from selfsup.models.heads import DINOHead
from selfsup.models.vit import VisionTransformer
from selfsup.options import opt


@dataclass
class IBOTConfig(DinoConfig):
    # iBOT's README, ViT-S/16: --teacher_temp 0.07 --warmup_teacher_temp_epochs 30 --norm_last_layer false
    # --shared_head true --out_dim 8192 (main_ibot.py: --warmup_teacher_temp 0.04, --momentum_teacher 0.996).
    out_dim: int = opt(4096, "Prototypes K of the [CLS] head (and of the patch head when shared). The CPU preset "
                       "uses DINO's 4096 on 10-class data (the head's cost grows linearly with K).", paper=8192, low=1)
    norm_last_layer: bool = opt(False, "Fix the norm of the heads' last-layer weights. iBOT trains it with ViT-S "
                                "(more accurate) and fixes it with ViT-B (steadier).", paper=False)
    teacher_temp: float = opt(0.07, "Final teacher temperature of both losses, reached after the warm-up; above 0.07 "
                              "training tends to be unstable.", paper=0.07, above=0)
    warmup_teacher_temp_epochs: float = opt(30.0, "Epochs of linear teacher-temperature warm-up from "
                                            "--ibot.warmup-teacher-temp.", paper=30, low=0)
    separate_head: bool = opt(False, "A head of its own for the patch tokens (DINOv2's ibot.separate_head: its "
                              "ViT-L/g recipes) instead of the [CLS] head (iBOT's ViT-S/B recipes, DINOv2's default). "
                              "Costs a second head and its teacher copy.", paper=False)
    patch_out_dim: int = opt(4096, "Prototypes of the separate patch head (--ibot.separate-head).", paper=8192,
                             low=1)
    patch_hidden_dim: int = opt(2048, "Hidden width of the separate patch head.", paper=2048, low=1)
    patch_bottleneck_dim: int = opt(256, "Bottleneck of the separate patch head.", paper=256, low=1)
    mask_ratio_min_max: tuple[float, float] = opt((0.1, 0.5), "Range of the share of patches masked in a masked "
                                                  "global crop, spread over the batch (DINOv2's "
                                                  "ibot.mask_ratio_min_max).", paper=(0.1, 0.5), low=0, high=1,
                                                  ordered=True)
    mask_sample_probability: float = opt(0.5, "Share of the global crops that are masked; the others train the "
                                         "[CLS] loss unmasked (DINOv2's ibot.mask_sample_probability). 0 turns the "
                                         "patch loss off.", paper=0.5, low=0, high=1)
    patch_loss_weight: float = opt(1.0, "Weight of the patch loss beside the [CLS] loss's 1 (iBOT's lambda2, "
                                   "DINOv2's ibot.loss_weight).", paper=1.0, low=0)
    koleo_loss_weight: float = opt(0.0, "Weight of KoLeo on the student's [CLS] embeddings of each global crop "
                                   "(DINOv2's dino.koleo_loss_weight, 0.1; iBOT has none).", paper=0.0, low=0)


# bytedance/ibot main_ibot.py defaults (AdamW, lr 5e-4 per 256 with linear scaling, weight decay 0.04 -> 0.4, 10
# warm-up epochs, min lr 1e-6, clip 3.0, drop path 0.1) and its README's ViT-S/16 command (--local_crops_number 10
# --global_crops_scale 0.25 1 --local_crops_scale 0.05 0.25); DataAugmentationiBOT is DINO's.
LOCAL_CROPS_WHY = ("each local crop costs a student forward and backward: the CPU preset keeps the shared 6 so that "
                   "the multi-crop methods compare at equal cost")
RECIPES = {"vit": {"optim": optim("adamw", 5e-4, 0.04, 10, weight_decay_end=0.4, min_lr=1e-6, clip_grad=3.0),
                   "views": section(recipe="dino", n_local=paper(10, cpu=6, why=LOCAL_CROPS_WHY),
                                    global_scale=(0.25, 1.0), local_scale=(0.05, 0.25))}}


def masks_weight(masks: torch.Tensor) -> torch.Tensor:
    """Per masked token (M,), in `masks[masks]` order: 1 / the masked patches of its image (collate.py)."""
    per_image = 1 / masks.sum(-1).clamp(min=1.0)  # (B,)
    return per_image[:, None].expand_as(masks)[masks]


class IBOTPatchLoss(nn.Module):
    """iBOT's patch loss on the masked tokens (ibot_patch_loss.py forward_masked) with its teacher side
    (softmax_center_teacher, sinkhorn_knopp_teacher) and the EMA centre of the teacher's patch outputs."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: str = "centering") -> None:
        super().__init__()
        if centering not in CENTERINGS:
            raise ValueError(f"centering {centering!r}: choose one of {', '.join(CENTERINGS)}")
        self.student_temp, self.center_momentum, self.centering = student_temp, center_momentum, centering
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_out: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Teacher logits of the masked tokens (M, K) -> probabilities (M, K), without gradient (none to assign
        when no patch is masked; with several processes, Sinkhorn-Knopp needs masked tokens on each)."""
        if not len(teacher_out):
            return teacher_out.float()
        return teacher_probabilities(teacher_out, self.center, teacher_temp, self.centering)

    def student_log_probs(self, student_out: torch.Tensor) -> torch.Tensor:
        """Student logits of the masked tokens (M, K) -> log-probabilities (M, K) at the student temperature."""
        return F.log_softmax(student_out.float() / self.student_temp, dim=-1)

    def forward(self, logp: torch.Tensor, q: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """-sum over masked tokens of masks_weight x sum_k q log p, / images: logp, q (M, K); masks (B, N) bool."""
        return -((q * logp).sum(-1) * masks_weight(masks)).sum() / masks.shape[0]

    @torch.no_grad()
    def update_center(self, total: torch.Tensor, count: torch.Tensor) -> None:
        """centre <- m * centre + (1 - m) * the mean teacher patch output over all processes, from this process's
        sum of outputs `total` (1, K) and their number `count` (a 0-d tensor)."""
        mean = all_reduce_sum(total) / all_reduce_sum(count.float()).clamp(min=1.0)
        self.center.mul_(self.center_momentum).add_(mean, alpha=1 - self.center_momentum)


class IBOT(DINO):
    name = "ibot"
    config_class = IBOTConfig
    recipes = RECIPES
    pooled_only = False  # reads the patch tokens and masks them itself
    families = ("vit",)
    # Which teacher patch outputs the patch centre averages: all of them (main_ibot.py update_center's
    # teacher_patch) or the masked ones (DINOv2, whose teacher head sees only those).
    center_on_all_patches: ClassVar[bool] = True

    def __init__(self, backbone: VisionTransformer, cfg: IBOTConfig, n_global: int = 2) -> None:
        super().__init__(backbone, cfg, n_global)
        # The method owns the mask token, as SimMIM; zeros, as DINOv2's and iBOT's ViTs (`mask_token`, `masked_embed`).
        self.mask_token = nn.Parameter(torch.zeros(1, 1, backbone.embed_dim))
        self.patch_head = DINOHead(backbone.embed_dim, cfg.patch_out_dim, cfg.patch_hidden_dim,
                                   cfg.patch_bottleneck_dim, use_bn=cfg.use_bn_in_head,
                                   norm_last_layer=cfg.norm_last_layer) if cfg.separate_head else None
        if self.patch_head is not None:
            self.teacher["patch_head"] = momentum_copy(patch_head=self.patch_head)["patch_head"]
        patch_dim = cfg.patch_out_dim if cfg.separate_head else cfg.out_dim
        self.patch_loss_fn = IBOTPatchLoss(patch_dim, cfg.student_temp, cfg.center_momentum, cfg.centering)
        self._patch_center: tuple[torch.Tensor, torch.Tensor] | None = None  # (sum (1, K), count), see forward

    def draw_mask(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h*w) bool over the patch grid of the global crops x (B, C, H, W), from torch's RNG."""
        h, w = self.backbone.grid_size(*x.shape[-2:])
        return dinov2_masks(len(x), h, w, self.cfg.mask_ratio_min_max, self.cfg.mask_sample_probability,
                            device=x.device)

    def heads(self, teacher: bool = False) -> tuple[nn.Module, nn.Module]:
        """The ([CLS] head, patch head) of the student or the teacher (the same module when shared)."""
        mods = self.teacher if teacher else {"head": self.head, "patch_head": self.patch_head}
        return mods["head"], mods["patch_head"] if self.patch_head is not None else mods["head"]

    @torch.no_grad()
    def teacher_outputs(self, glob: torch.Tensor, masks: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The teacher on the unmasked global crops (G*B, C, H, W): [CLS] logits (G*B, K), patch logits of the
        masked tokens (M, K') and the patch logits its centre averages (all G*B*N or the M masked)."""
        t = self.teacher["backbone"].forward_features(glob)
        head, patch_head = self.heads(teacher=True)
        patches = t["x_norm_patchtokens"]  # (G*B, N, D)
        if self.center_on_all_patches:
            every = patch_head(patches.flatten(0, 1))  # (G*B*N, K')
            return head(t["x_norm_clstoken"]), every[masks.flatten()], every
        masked = patch_head(patches[masks])  # (M, K')
        return head(t["x_norm_clstoken"]), masked, masked

    def student_outputs(self, views: list[torch.Tensor], glob: torch.Tensor, masks: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The student on the masked global crops and the local ones: [CLS] logits of every view (V*B, K), view
        by view, patch logits of the masked tokens (M, K') and the global crops' [CLS] embeddings (G*B, D)."""
        s = self.backbone.forward_features(glob, masks, self.mask_token)
        local = [forward_concat_by_size(lambda x: self.backbone.forward_features(x)["x_norm_clstoken"],
                                        views[self.n_global:])] if len(views) > self.n_global else []
        head, patch_head = self.heads()
        cls_logits = head(torch.cat([s["x_norm_clstoken"], *local]), self.predictor)  # (V*B, K)
        return cls_logits, patch_head(s["x_norm_patchtokens"][masks]), s["x_norm_clstoken"]

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        g, temp = self.n_global, float(self.teacher_temp[step])
        glob = torch.cat(views[:g])  # (G*B, C, H, W), view by view
        masks = self.draw_mask(glob)  # (G*B, N) bool
        teacher_cls, teacher_patch, centre_of = self.teacher_outputs(glob, masks)
        student_cls, student_patch, cls_tokens = self.student_outputs(views, glob, masks)
        q, logp, pairs = self.loss_fn.distributions(student_cls, teacher_cls, len(views), temp)
        cls_loss = self.loss_fn.pair_loss(q, logp, pairs)
        patch_q = self.patch_loss_fn.teacher_probs(teacher_patch, temp)  # (M, K')
        patch_logp = self.patch_loss_fn.student_log_probs(student_patch)  # (M, K')
        patch_loss = self.patch_loss_fn(patch_logp, patch_q, masks)
        # DINOv2 sums KoLeo over the global crops' [CLS] chunks (never compares two crops of one image)
        koleo = sum(koleo_loss(c) for c in cls_tokens.chunk(g)) if self.cfg.koleo_loss_weight else 0.0
        loss = cls_loss + self.cfg.patch_loss_weight * patch_loss + self.cfg.koleo_loss_weight * koleo
        # The centres move in on_after_step, i.e. only once the step is known to be finite.
        self._batch_center = teacher_cls.float().mean(dim=0, keepdim=True)  # (1, K)
        self._patch_center = (centre_of.float().sum(dim=0, keepdim=True), centre_of.new_tensor(len(centre_of)))
        if not diagnostics:
            return loss, {}
        return loss, {**self.distillation_logs(q, logp, pairs, cls_tokens),
                      "dino_loss": cls_loss.item(), "ibot_loss": patch_loss.item(),
                      **({"koleo_loss": float(koleo.detach())} if self.cfg.koleo_loss_weight else {}),
                      **weighted_entropy_split(patch_q, patch_logp.detach(), masks_weight(masks)),
                      "masked": float(masks.float().mean())}

    def on_after_backward(self, step: int) -> None:
        if step < self.freeze_steps and self.patch_head is not None:  # every head's last layer (DINOv2, iBOT)
            for p in self.patch_head.last_layer.parameters():
                p.grad = None
        super().on_after_backward(step)

    @torch.no_grad()
    def on_after_step(self, step: int) -> None:
        if self._patch_center is not None and self.cfg.centering == "centering":
            self.patch_loss_fn.update_center(*self._patch_center)
        self._patch_center = None
        super().on_after_step(step)

    def _pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        extra = [(self.teacher["patch_head"], self.patch_head)] if self.patch_head is not None else []
        return super()._pairs() + extra
