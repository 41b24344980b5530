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


def make_fabric(cfg: PretrainConfig) -> Fabric:
    """The run's Fabric. Under torchrun or srun, --devices and --num-nodes left at their defaults take the
    launcher's process counts (`process_counts`), so that its processes train together with DDP."""
    run = cfg.run
    accel = run.accelerator if run.accelerator != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    precision = run.precision or ("bf16-mixed" if accel == "cuda" else "32-true")
    devices, num_nodes = process_counts(run.devices, run.num_nodes)
    multi = str(devices) != "1" or num_nodes > 1
    return Fabric(accelerator=accel, devices=devices, num_nodes=num_nodes,
                  strategy=ddp_strategy() if multi else "auto", precision=precision)
