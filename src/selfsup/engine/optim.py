"""Optimiser, parameter groups and the per-step learning-rate / weight-decay schedules."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from selfsup.config import CLIP_MODES, ConfigError, OptimConfig
from selfsup.engine.lars import LARS
from selfsup.methods.base import Method, ParamGroup, split_norm_bias
from selfsup.schedules import cosine_schedule


def param_groups(model: nn.Module) -> list[dict]:
    """Two groups as in DINO: weights are decayed; biases and 1-d parameters (norms) are not."""
    weights, norm_bias = split_norm_bias(model.named_parameters())
    return [{"params": weights.params}, {"params": norm_bias.params, "weight_decay": 0.0, "decay": False}]


def torch_groups(groups: list[ParamGroup], decay_norm_bias: bool = False, lr_bias_scale: float = 1.0,
                 peak_lr: float | None = None) -> list[dict]:
    """Optimiser groups with what `apply_schedules` needs: whether the group is decayed (and LARS-adapted),
    its lr multiplier (Barlow Twins' bias lr) and, for a fixed-lr group, the lr it keeps (SimSiam)."""
    out = []
    for g in groups:
        if not g.params:
            continue
        decay = decay_norm_bias or not g.norm_or_bias
        out.append({"params": g.params, "decay": decay, "lars_exclude": not decay,
                    "lr_scale": lr_bias_scale if g.norm_or_bias else 1.0,
                    "fixed_lr": peak_lr if g.fixed_lr and peak_lr is not None else None})
    return out


OPTIMIZERS = ("adamw", "lars", "sgd")


def build_optimizer(model: nn.Module, name: str = "adamw", momentum: float = 0.9, *, decay_norm_bias: bool = False,
                    lr_bias_scale: float = 1.0, peak_lr: float | None = None, eta: float = 0.001,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """AdamW (DINO, MoCo v3 ViT), LARS (SimCLR, BYOL, Barlow Twins, SwAV, VICReg, MoCo v3 ResNet) or SGD
    (SimSiam, MoCo v2, DINO ResNet) over the method's `param_groups()`; lr and weight decay are set every
    step by `apply_schedules`. `peak_lr` is the lr that fixed-lr groups keep (None: they follow the schedule)."""
    groups = model.param_groups() if isinstance(model, Method) else split_norm_bias(model.named_parameters())
    groups = torch_groups(groups, decay_norm_bias, lr_bias_scale, peak_lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0, betas=tuple(betas))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=momentum, weight_decay=0.0)
    if name == "lars":
        return LARS(groups, lr=0.0, momentum=momentum, eta=eta)
    raise ConfigError(f"unknown --optim.optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


def optimizer_for(method: Method, cfg: OptimConfig, world_batch: int) -> torch.optim.Optimizer:
    """The optimiser the options ask for, over the method's parameter groups."""
    bias_scale = 1.0 if cfg.lr_bias is None or cfg.lr == 0 else cfg.lr_bias / cfg.lr
    return build_optimizer(method, cfg.optimizer, cfg.momentum, decay_norm_bias=cfg.decay_norm_bias,
                           lr_bias_scale=bias_scale, peak_lr=cfg.lr * world_batch / 256, betas=cfg.betas)


def warmup_steps(cfg: OptimConfig, total_steps: int, steps_per_epoch: int) -> int:
    """The lr warm-up's steps: --optim.warmup-epochs, but at most --optim.warmup-max-share of the run's
    total_steps, so that a warm-up set for an 800-epoch schedule keeps its share of a shorter run."""
    return int(min(cfg.warmup_epochs * steps_per_epoch, cfg.warmup_max_share * total_steps))


def optim_schedules(cfg, total_steps: int, steps_per_epoch: int, world_batch: int) -> dict[str, np.ndarray]:
    """lr: linear warm-up (`warmup_steps`) to lr x batch/256, cosine to min_lr; wd: cosine from weight_decay
    to _end."""
    peak = cfg.lr * world_batch / 256
    warm = warmup_steps(cfg, total_steps, steps_per_epoch)
    return {"lr": cosine_schedule(peak, cfg.min_lr, total_steps, warm),
            "wd": cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, total_steps)}


def apply_schedules(optimizer: torch.optim.Optimizer, lr: float, wd: float) -> None:
    """This step's lr (times each group's multiplier, or the group's fixed lr) and weight decay (decayed
    groups only)."""
    for group in optimizer.param_groups:
        fixed = group.get("fixed_lr")
        group["lr"] = (lr if fixed is None else fixed) * group.get("lr_scale", 1.0)
        group["weight_decay"] = wd if group.get("decay", True) else 0.0


def clip_gradients(model: nn.Module, clip: float, mode: str = "parameter") -> None:
    """Clip the gradients to norm `clip` (0: no clipping). "parameter": each parameter's gradient norm on its
    own, as DINO's utils.clip_gradients; "global": the norm of all gradients together, scaled alike, as
    torch's clip_grad_norm_ in microsoft/SimMIM main_simmim.py (--optim.clip-mode)."""
    if mode not in CLIP_MODES:
        raise ConfigError(f"unknown --optim.clip-mode {mode!r}: choose one of {', '.join(CLIP_MODES)}")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if clip <= 0 or not grads:
        return
    if mode == "global":
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], clip)
        return
    norms = torch._foreach_norm(grads)
    scale = [(clip / (n + 1e-6)).clamp(max=1.0) for n in norms]
    torch._foreach_mul_(grads, scale)
