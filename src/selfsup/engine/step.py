"""One optimisation step, as the inner loop of DINO's train_one_epoch: forward, a finite check every process
agrees on, backward, the method's hooks, unscale, clip, step. The trainer (pretrain.py) calls it once a step."""

from __future__ import annotations

import torch
from lightning.fabric import Fabric

from selfsup.engine.optim import apply_schedules, clip_gradients
from selfsup.methods import Method
from selfsup.models.running_stats import RunningStats


def optimization_step(fabric: Fabric, model: torch.nn.Module, method: Method, optimizer: torch.optim.Optimizer,
                      views: list[torch.Tensor], step: int, lr: float, wd: float, clip: float,
                      diagnostics: bool = True, stats: RunningStats | None = None, freeze_backbone: bool = False,
                      clip_mode: str = "parameter"
                      ) -> tuple[torch.Tensor | float, bool, dict[str, float]]:
    """Forward, backward, clip (`clip_mode`: per parameter or global, engine/optim.py clip_gradients), step
    and the method's hooks; `model` is the Fabric-wrapped `method`.

    One host sync a step, the finite flag (as DINO's `math.isfinite(loss.item())`): the loss comes back as a
    device tensor, read on logging steps only. A non-finite loss on any process skips the step on every
    process (so DDP stays in step), leaves no trace and returns (nan, False, {}): the optimiser does not step,
    `on_after_step` (where the methods apply their centre, queue and momentum updates) is not called, and the
    running statistics that the forward updated are put back from `stats` (a RunningStats of `method`; one is
    made here if None). The dict holds the method's diagnostics for this step, computed only if `diagnostics`. With
    `freeze_backbone` the backbone's gradients are dropped, so that only the heads step (the optimiser skips a
    parameter without a gradient, weight decay included; --optim.freeze-backbone-epochs).
    """
    stats = stats if stats is not None else RunningStats(method)
    stats.save()
    apply_schedules(optimizer, lr, wd)
    loss, logs = model(views, step, diagnostics=diagnostics)
    finite = bool(fabric.all_reduce(torch.isfinite(loss.detach()).float(), reduce_op="min").item() > 0)
    if not finite:
        stats.restore()
        optimizer.zero_grad(set_to_none=True)
        return float("nan"), False, {}
    fabric.backward(loss)
    method.on_after_backward(step)
    if freeze_backbone:
        for p in method.backbone.parameters():
            p.grad = None
    unscale_gradients(fabric, optimizer)
    clip_gradients(method, clip, clip_mode)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    method.on_after_step(step)
    method.update_average()
    return loss.detach(), True, logs  # a tensor: read on the host on log steps only (IntervalMeter.flush)


def unscale_gradients(fabric: Fabric, optimizer: torch.optim.Optimizer) -> None:
    """Under 16-mixed, divide the gradients by GradScaler's loss scale before they are clipped (the scaler then
    skips its own unscaling in the step); clipping the scaled gradients would shrink every update by the scale
    (65,536 at first). A no-op for every other precision."""
    fabric.strategy.precision.unscale_gradients(getattr(optimizer, "optimizer", optimizer))
