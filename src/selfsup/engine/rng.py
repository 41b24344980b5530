"""Random generator states in checkpoints: every process's, so a resumed run draws the same augmentations."""

from __future__ import annotations

import warnings

import torch
from lightning.fabric import Fabric

from selfsup.validate import ConfigError


def gather_rng_states(fabric: Fabric) -> dict[str, torch.Tensor]:
    """Every process's random generator states, (world, n) bytes each: "cpu", and "cuda" (the state of the
    process's own GPU) on GPUs. A collective: every process takes part."""
    local = {"cpu": torch.get_rng_state()}
    if fabric.device.type == "cuda":
        local["cuda"] = torch.cuda.get_rng_state(fabric.device)
    with warnings.catch_warnings():  # Lightning's all_gather uses a torch API that warns of deprecation
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated")
        return {k: fabric.all_gather(v).view(fabric.world_size, -1).cpu() for k, v in local.items()}


def restore_rng_states(fabric: Fabric, states: dict[str, torch.Tensor] | torch.Tensor) -> None:
    """This process's states from `gather_rng_states`'s (or, from checkpoints before the CUDA state, the CPU
    states alone); a checkpoint of another process count is refused."""
    states = states if isinstance(states, dict) else {"cpu": states}
    if states["cpu"].shape[0] != fabric.world_size:
        raise ConfigError(f"checkpoint was written by {states['cpu'].shape[0]} processes; resume with the "
                          "same --devices and --num-nodes")
    rank = fabric.global_rank
    torch.set_rng_state(states["cpu"][rank].clone())
    if "cuda" in states and fabric.device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"][rank].clone(), fabric.device)
