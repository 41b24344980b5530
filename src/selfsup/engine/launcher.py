"""Processes started by an outside launcher (torchrun, SLURM's srun): how many there are, so that a run
started by one trains on all of them instead of as that many separate single-process runs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from selfsup.validate import ConfigError


@dataclass(frozen=True)
class Launched:
    """The processes a launcher started: `per_node` on each of `nodes` nodes."""

    launcher: str  # "torchrun" or "srun"
    per_node: int
    nodes: int


def launched_processes() -> Launched | None:
    """The processes of torchrun (WORLD_SIZE, LOCAL_WORLD_SIZE) or srun (SLURM_NTASKS_PER_NODE, SLURM_NNODES),
    detected as Lightning Fabric detects them (torchrun first: it may run inside a SLURM job); None without."""
    if TorchElasticEnvironment.detect():
        world, local = int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
        return Launched("torchrun", local, max(1, world // local))
    if SLURMEnvironment.detect():
        world, nodes = int(os.environ["SLURM_NTASKS"]), int(os.environ.get("SLURM_NNODES", "1"))
        return Launched("srun", int(os.environ.get("SLURM_NTASKS_PER_NODE", max(1, world // nodes))), nodes)
    return None


def process_counts(devices: int | str, num_nodes: int) -> tuple[int | str, int]:
    """(devices per node, nodes) for Fabric: --devices/--num-nodes as given, or the launcher's counts where
    both are left at their defaults (1 or 'auto', and 1). Counts that contradict the launcher's are refused."""
    launched = launched_processes()
    if launched is None:
        return devices, num_nodes
    if str(devices) in ("1", "auto") and num_nodes == 1:
        return launched.per_node, launched.nodes
    if str(devices) != str(launched.per_node) or num_nodes != launched.nodes:
        raise ConfigError(f"--devices {devices} --num-nodes {num_nodes} ask for {devices} process(es) on each of "
                          f"{num_nodes} node(s), but {launched.launcher} started {launched.per_node} on each of "
                          f"{launched.nodes}: pass --devices {launched.per_node} --num-nodes {launched.nodes}, or "
                          "leave both out to take the launcher's counts")
    return devices, num_nodes


__all__ = ["Launched", "launched_processes", "process_counts"]
