"""Optimiser, parameter groups and the per-step learning-rate / weight-decay schedules."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from selfsup.config import ConfigError
from selfsup.engine.lars import LARS
from selfsup.schedules import cosine_schedule


def param_groups(model: nn.Module) -> list[dict]:
    """Two groups as in DINO: weights are decayed; biases and 1-d parameters (norms) are not."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


OPTIMIZERS = ("adamw", "lars", "sgd")


def build_optimizer(model: nn.Module, name: str = "adamw", momentum: float = 0.9) -> torch.optim.Optimizer:
    """AdamW (DINO, MoCo v3 ViT), LARS (SimCLR, BYOL, Barlow Twins, SwAV, VICReg) or SGD (SimSiam, MoCo v2);
    lr and weight decay are set every step by `apply_schedules`."""
    groups = param_groups(model)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=momentum, weight_decay=0.0)
    if name == "lars":
        groups[1]["lars_exclude"] = True
        return LARS(groups, lr=0.0, momentum=momentum)
    raise ConfigError(f"unknown --optim.optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


def optim_schedules(cfg, total_steps: int, steps_per_epoch: int, world_batch: int) -> dict[str, np.ndarray]:
    """lr: linear warm-up to lr x batch/256, cosine to min_lr; wd: cosine from weight_decay to _end."""
    peak = cfg.lr * world_batch / 256
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    return {"lr": cosine_schedule(peak, cfg.min_lr, total_steps, warm),
            "wd": cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, total_steps)}


def apply_schedules(optimizer: torch.optim.Optimizer, lr: float, wd: float) -> None:
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = lr
        if i == 0:  # only the regularised group is decayed
            group["weight_decay"] = wd


def clip_gradients(model: nn.Module, clip: float) -> None:
    """DINO's clipping: each parameter's gradient norm is clipped to `clip` on its own."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if clip <= 0 or not grads:
        return
    norms = torch._foreach_norm(grads)
    scale = [(clip / (n + 1e-6)).clamp(max=1.0) for n in norms]
    torch._foreach_mul_(grads, scale)
