"""The reference that benchmarks/throughput.py times the library's DINO step against, and checks it with:
plain DINO as the original code writes it (explicit-softmax attention, each view through backbone and head on
its own, the loss as a double loop of cross-entropies)."""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

from selfsup.config import PretrainConfig
from selfsup.methods.dino import DINO, DINOLoss
from selfsup.models import build_backbone
from selfsup.models.vit_layers import Attention

TOLERANCE = 1e-4  # relative difference allowed between the optimised and the reference loss


def _explicit_attention(self: Attention, x: torch.Tensor, return_attention: bool = False):
    """Attention.forward that always takes the explicit-softmax path and drops the maps unless asked."""
    out, attn = Attention.forward(self, x, return_attention=True)
    return (out, attn) if return_attention else out


def use_explicit_attention(model: torch.nn.Module) -> None:
    """Patch this model's Attention instances only (the class and other models keep SDPA)."""
    for m in model.modules():
        if isinstance(m, Attention):
            m.forward = types.MethodType(_explicit_attention, m)


def loop_loss(student_out: list[torch.Tensor], teacher_out: list[torch.Tensor], loss_fn: DINOLoss,
              teacher_temp: float) -> torch.Tensor:
    """DINO's loss as in the original code: a cross-entropy per (teacher view, other student view) pair."""
    terms = []
    for i, t in enumerate(teacher_out):
        q = F.softmax((t.float() - loss_fn.center) / teacher_temp, dim=-1)
        for v, s in enumerate(student_out):
            if v != i:
                terms.append(F.cross_entropy(s.float() / loss_fn.student_temp, q))
    return sum(terms) / len(terms)


class ReferenceDINO(DINO):
    """DINO with a per-view Python loop: each view through backbone and head on its own."""

    def forward(self, views: list[torch.Tensor], step: int, diagnostics: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        teacher = self.teacher
        with torch.no_grad():
            teacher_out = [teacher["head"](teacher["backbone"](v)) for v in views[: self.n_global]]
        student_out = [self.head(self.backbone(v)) for v in views]
        loss = loop_loss(student_out, teacher_out, self.loss_fn, float(self.teacher_temp[step]))
        self._batch_center = torch.cat(teacher_out).float().mean(dim=0, keepdim=True)  # centre: on_after_step
        return loss, {}


def build_reference(cfg: PretrainConfig, channels: int, fast: DINO) -> ReferenceDINO:
    """A ReferenceDINO with the weights of `fast` and explicit attention in student and teacher."""
    v, b = cfg.views, cfg.backbone
    backbone = build_backbone(b.name, v.global_size, channels, b.patch_size, b.drop_path, width=b.width,
                              depth=b.depth)
    ref = ReferenceDINO(backbone, cfg.method_cfg, n_global=v.n_global)
    ref.load_state_dict(fast.state_dict())
    use_explicit_attention(ref)
    return ref


def check_same_loss(fast: DINO, ref: DINO, views: list[torch.Tensor]) -> tuple[float, float, float]:
    """(optimised loss, reference loss, relative difference) at step 0, without dropped paths; the
    loss centres are restored afterwards so the check leaves no trace."""
    centers = [m.loss_fn.center.clone() for m in (fast, ref)]
    fast.eval()
    ref.eval()
    with torch.no_grad():
        a, b = float(fast(views, 0, diagnostics=False)[0]), float(ref(views, 0, diagnostics=False)[0])
    for m, c in zip((fast, ref), centers, strict=True):
        m.loss_fn.center.copy_(c)
        m.train()
    return a, b, abs(a - b) / max(abs(b), 1e-12)
