"""The interface every pre-training method implements (in the spirit of moco-v3's builder.py).

A method owns the backbone and its heads. The engine calls, per optimisation step:
    loss, logs = method(views, step)      # views: list of (B, C, h, w) tensors, global views first
    backward; method.on_after_backward(step); clip; optimizer.step()
    method.on_after_step(step)            # momentum encoders, queues, ...
Schedules are precomputed per step by `setup(total_steps, steps_per_epoch)` before training.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import nn


class Method(nn.Module):
    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, backbone: nn.Module, cfg: Any, n_global: int = 2) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.n_global = n_global  # the first n_global views are global crops
        self.total_steps = 0
        self.steps_per_epoch = 0

    def setup(self, total_steps: int, steps_per_epoch: int) -> None:
        """Precompute the method's per-step schedules. Called once the run length is known."""
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch

    def forward(self, views: list[torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def on_after_backward(self, step: int) -> None:
        """Hook between backward and the optimiser step (e.g. freeze a layer's gradients)."""

    @torch.no_grad()
    def on_after_step(self, step: int) -> None:
        """Hook after the optimiser step (e.g. EMA update of a momentum encoder)."""

    def eval_backbone(self) -> nn.Module:
        """The backbone whose features are evaluated and exported."""
        return self.backbone

    def schedule_values(self, step: int) -> dict[str, float]:
        """Scheduled hyper-parameters at `step`, for logging."""
        return {}


def forward_multicrop(backbone: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """Backbone features of all views, (sum of view batches, D): one forward per run of equal-sized views."""
    sizes = torch.tensor([v.shape[-1] for v in views])
    ends = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0).tolist()
    out, start = [], 0
    for end in ends:
        out.append(backbone(torch.cat(views[start:end])))
        start = end
    return torch.cat(out)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, over parameters (buffers are copied)."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1 - momentum)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        tb.copy_(ob)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over processes when running distributed; identity otherwise."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x
