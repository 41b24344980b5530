"""Momentum (EMA) encoders, shared by DINO's teacher, BYOL's target and MoCo's key encoder."""

from __future__ import annotations

import copy

import torch
from torch import nn

from selfsup.models.vit import DropPath


def momentum_copy(**modules: nn.Module) -> nn.ModuleDict:
    """Frozen deep copies of `modules` (e.g. backbone=..., head=...), updated only by `ema_update`.

    Stochastic depth is switched off in the copy: the teacher/target is built without it in DINO and BYOL.
    """
    target = nn.ModuleDict({k: copy.deepcopy(m) for k, m in modules.items()})
    target.requires_grad_(False)
    for m in target.modules():
        if isinstance(m, DropPath):
            m.p = 0.0
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, over parameters (buffers are copied)."""
    t_params = list(target.parameters())
    o_params = [p.detach() for p in online.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1 - momentum)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        tb.copy_(ob)
