"""The Lightning Fabric a run trains on: accelerator, devices and nodes, DDP, precision."""

from __future__ import annotations

import torch
from lightning.fabric import Fabric
from lightning.fabric.strategies import DDPStrategy

from selfsup.config import PretrainConfig
from selfsup.engine.launcher import process_counts


def ddp_strategy() -> DDPStrategy:
    """DDP without the broadcast of every buffer from rank 0 before each forward (MoCo's queue alone is
    32 MB). No buffer needs it: DINO's centre is all-reduced and MoCo's and SwAV's queues are built from
    gathered keys, so they are identical on every process by construction, as are SyncBatchNorm's running
    statistics. Per-process BatchNorm normalises with its batch's statistics while training; its running
    statistics are read only by evaluation and checkpoints, both rank 0's, which a broadcast from rank 0
    leaves as they are. (DDP still syncs parameters and buffers once, when it wraps the model, and a resume
    loads rank 0's checkpoint on every process.)"""
    return DDPStrategy(broadcast_buffers=False)


def default_precision(accelerator: str, bf16: bool | None = None) -> str:
    """32-true on a CPU; on a GPU bf16-mixed where it computes in bf16 (`bf16`: asked of the device when None),
    else 16-mixed, whose loss scaling keeps small gradients from underflowing."""
    if accelerator != "cuda":
        return "32-true"
    if bf16 is None:
        bf16 = torch.cuda.is_bf16_supported()
    return "bf16-mixed" if bf16 else "16-mixed"


def precision_words(accelerator: str, precision: str, asked: str | None, bf16: bool | None = None) -> str:
    """One line for the log: the precision a run computes in, and why."""
    if asked:
        return f"precision: {precision} (--run.precision)"
    if accelerator != "cuda":
        return f"precision: {precision} (the default on {accelerator}: bf16 autocast is ~10x slower on a CPU)"
    if precision == "bf16-mixed":
        return "precision: bf16-mixed (the default on a GPU that computes in bf16; losses and logits in fp32)"
    return ("precision: 16-mixed (this GPU has no bf16: fp16 autocast with loss scaling, gradients unscaled "
            "before clipping; losses and logits in fp32)")


def make_fabric(cfg: PretrainConfig) -> Fabric:
    """The run's Fabric. Under torchrun or srun, --devices and --num-nodes left at their defaults take the
    launcher's process counts (`process_counts`), so that its processes train together with DDP."""
    run = cfg.run
    accel = run.accelerator if run.accelerator != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    precision = run.precision or default_precision(accel)
    devices, num_nodes = process_counts(run.devices, run.num_nodes)
    multi = str(devices) != "1" or num_nodes > 1
    return Fabric(accelerator=accel, devices=devices, num_nodes=num_nodes,
                  strategy=ddp_strategy() if multi else "auto", precision=precision)
