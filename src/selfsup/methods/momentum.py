"""Momentum (EMA) encoders, shared by DINO's teacher, BYOL's target and MoCo's key encoder.

The EMA runs over parameters only, as in every official code: dino main_dino.py (`for param_q, param_k in
zip(student.module.parameters(), teacher_without_ddp.parameters())`), moco builder.py
`_momentum_update_key_encoder` and moco-v3 builder.py `_update_momentum_encoder` (both `.parameters()`), and
BYOL (Grill et al., 2020, Sec. 3.1: the target *parameters* xi are an EMA of theta; in
deepmind-research/byol byol_experiment.py the target network keeps its own haiku `state`). Buffers, i.e.
BatchNorm running statistics, are the copy's own: it runs in training mode, normalises with its batch's
statistics and accumulates its running statistics from its own forwards (DINO's teacher from the global
crops), which is what its evaluation uses.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from selfsup.models.vit import VisionTransformer
from selfsup.models.vit_layers import DropPath


def momentum_copy(**modules: nn.Module) -> nn.ModuleDict:
    """Frozen deep copies of `modules` (e.g. backbone=..., head=...), updated only by `ema_update`.

    Stochastic depth is switched off in the copy: the teacher/target is built without it in DINO and BYOL; so
    is patch dropout (--backbone.patch-dropout).
    """
    target = nn.ModuleDict({k: copy.deepcopy(m) for k, m in modules.items()})
    target.requires_grad_(False)
    for m in target.modules():
        if isinstance(m, DropPath):
            m.p = 0.0
        if isinstance(m, VisionTransformer):
            m.patch_dropout = 0.0  # the target sees whole views, as MSN's (Assran et al., 2022)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, over parameters; the target's buffers (BatchNorm
    running statistics) are left to its own forwards."""
    t_params = list(target.parameters())
    o_params = [p.detach() for p in online.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1 - momentum)
