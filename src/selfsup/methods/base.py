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
from torch import nn

# Shared defaults of the methods that compare two views of each image: no local crops, and the wide crop
# range of SimCLR/BYOL/MoCo (0.08-1 of the area) instead of multi-crop's 0.4-1.
TWO_VIEW_DEFAULTS: dict[str, dict[str, Any]] = {"views": {"n_local": 0, "global_scale": (0.08, 1.0)}}


class Method(nn.Module):
    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    # Whether the method takes local crops after the global ones (DINO, SwAV); the others compare 2 views.
    multicrop: ClassVar[bool] = False
    # Section values this method changes from the shared defaults (below any recipe or flag), e.g. the
    # two-view methods' {"views": {"n_local": 0}}. docs/options.md lists them per method.
    defaults: ClassVar[dict[str, dict[str, Any]]] = {}

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

    def embed(self, views: list[torch.Tensor], module: nn.Module | None = None) -> list[torch.Tensor]:
        """`module` (default: the backbone) applied to each view on its own, as a list of (B, D) tensors.

        One forward per view, as the official BYOL, SimSiam, Barlow Twins, VICReg and MoCo v3 codes: a
        ResNet's BatchNorm then normalises each view with its own batch statistics. Methods whose official
        code batches the views together (SimCLR, DINO, SwAV) call `forward_concat_by_size` instead."""
        module = module or self.backbone
        return [module(v) for v in views]

    def schedule_values(self, step: int) -> dict[str, float]:
        """Scheduled hyper-parameters at `step`, for logging."""
        return {}


def forward_concat_by_size(backbone: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """Backbone features of all views, (sum of view batches, D): one forward per run of consecutive views of
    the same size, concatenated along the batch (DINO's and SwAV's multi-crop forward, SimCLR's 2N batch).
    BatchNorm layers then see the statistics of all views of a run at once."""
    sizes = torch.tensor([v.shape[-1] for v in views])
    ends = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0).tolist()
    out, start = [], 0
    for end in ends:
        out.append(backbone(torch.cat(views[start:end])))
        start = end
    return torch.cat(out)
