"""Random generator states in checkpoints: every process's, so a resumed run draws the same augmentations
(re-seeded per process when it resumes on another process count)."""

from __future__ import annotations

import hashlib
import sys
import warnings

import torch
from lightning.fabric import Fabric


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
    states alone). A checkpoint of another process count (N -> M) re-seeds each process from the saved states
    and its rank instead (`reseed`), and says so once: the run goes on, but not bit-exact."""
    states = states if isinstance(states, dict) else {"cpu": states}
    saved, rank = states["cpu"].shape[0], fabric.global_rank
    if saved != fabric.world_size:
        torch.manual_seed(reseed(states, rank))  # every device's generator, CUDA's included
        fabric.print(f"notice: {resumed_on_another_count(saved, fabric.world_size)}", file=sys.stderr)
        return
    torch.set_rng_state(states["cpu"][rank].clone())
    if "cuda" in states and fabric.device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"][rank].clone(), fabric.device)


def reseed(states: dict[str, torch.Tensor], rank: int) -> int:
    """A 63-bit seed for process `rank` from the bytes of every saved state: the same checkpoint and rank
    always give the same seed, and different ranks different ones."""
    digest = hashlib.sha256(str(rank).encode())
    for key in sorted(states):
        digest.update(key.encode())
        digest.update(states[key].contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def resumed_on_another_count(saved: int, world: int) -> str:
    return (f"resumed {saved}-process checkpoint on {world} processes: RNG states re-seeded per process, so the "
            "run is not bit-exact")
