"""The last checks before a run starts, each a notice instead of a crash: a batch larger than the data is
lowered, DataLoader workers are held to the cores, and the peak memory is estimated (`memory.py`) and said in
one line; if it passes `SAFE_SHARE` of the memory available, the batch is halved (when the user did not set
it) and then split into micro-batches (when the user did not set those) until it fits, or the run is refused
in one line when nothing fits. The kernel's OOM killer gives no message; this does."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from selfsup.config import ConfigError, PretrainConfig
from selfsup.machine import Resources
from selfsup.sizing.data_facts import DataFacts
from selfsup.sizing.memory import GIB, Activations, Estimate, estimate, probe_method
from selfsup.sizing.recipe import given

SAFE_SHARE = 0.75  # of the memory available: the rest is for the system, other programs and the estimate's error
MIN_BATCH = 8  # the guard halves a batch it chose down to this, then splits it into micro-batches
Probe = Callable[[PretrainConfig, int], tuple[int, Activations]]


def _optim(cfg: PretrainConfig, **values: Any) -> PretrainConfig:
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, **values))


def processes(cfg: PretrainConfig) -> int:
    devices = cfg.run.devices if isinstance(cfg.run.devices, int) else 1
    return devices * cfg.run.num_nodes


def fit_batch_to_data(cfg: PretrainConfig, facts: DataFacts) -> tuple[PretrainConfig, list[str]]:
    """A batch larger than the training images is lowered to the largest power of two they fill (a multiple
    of the processes)."""
    batch, world = cfg.optim.batch_size, processes(cfg)
    if batch <= facts.count:
        return cfg, []
    lowered = 2 ** (facts.count.bit_length() - 1)
    lowered = max(lowered - lowered % world, world * (2 if world == 1 else 1))
    if lowered > facts.count:
        raise ConfigError(f"--batch-size: the {facts.count} training images cannot fill a batch of 2 per process "
                          f"on {world} processes: add images or use fewer --devices")
    return _optim(cfg, batch_size=lowered), [
        f"notice: --batch-size {batch} is larger than the {facts.count} training images: lowered to {lowered}"]


def fit_workers(cfg: PretrainConfig, facts: DataFacts, res: Resources) -> tuple[PretrainConfig, list[str]]:
    """DataLoader workers held to the cores this process may use (torch warns beyond them, and they would
    take the model's cores)."""
    if not facts.streamed or cfg.data.workers <= res.cores:
        return cfg, []
    data = dataclasses.replace(cfg.data, workers=res.cores)
    return dataclasses.replace(cfg, data=data), [
        f"notice: --data.workers {cfg.data.workers} is more than the {res.cores} cores: lowered to {res.cores}"]


def _fits(est: Estimate, res: Resources) -> bool:
    return est.ram <= SAFE_SHARE * res.memory and est.device <= SAFE_SHARE * res.gpu_memory


def fit_memory(cfg: PretrainConfig, user: dict[str, Any], facts: DataFacts, res: Resources,
               probe: Probe = probe_method) -> tuple[PretrainConfig, list[str]]:
    """`cfg` (sizes resolved) with a batch and micro-batches that fit in memory, and the lines that say so."""
    on_gpu = bool(res.gpu) and cfg.run.accelerator != "cpu"
    model, acts = probe(cfg, facts.channels)
    world = processes(cfg)

    def peak(c: PretrainConfig) -> Estimate:
        return estimate(c, facts, model, acts, on_gpu, world)

    first, asked = peak(cfg), (cfg.optim.batch_size, cfg.optim.micro_batches)
    while not _fits(peak(cfg), res) and not given(user, "optim.batch_size") and cfg.optim.batch_size // 2 >= MIN_BATCH:
        cfg = _optim(cfg, batch_size=cfg.optim.batch_size // 2)
    while (not _fits(peak(cfg), res) and not given(user, "optim.micro_batches")
           and cfg.optim.micro_batches * 2 <= cfg.optim.batch_size // world):
        cfg = _optim(cfg, micro_batches=cfg.optim.micro_batches * 2)
    est = peak(cfg)
    room = f"{SAFE_SHARE:.0%} of {res.memory / GIB:.1f} GiB available" + (
        f" and of the GPU's {res.gpu_memory / GIB:.1f} GiB" if on_gpu else "")
    if not _fits(est, res):
        raise ConfigError(f"the run needs about {est.words()} at batch {cfg.optim.batch_size} with "
                          f"{cfg.optim.micro_batches} micro-batch(es), more than {room}: lower --batch-size or "
                          "--views.global-size, or choose a smaller --backbone.name")
    lines = [f"memory: peak about {est.words()}, within {room}"]
    if (cfg.optim.batch_size, cfg.optim.micro_batches) != asked:
        lines.insert(0, f"notice: batch {asked[0]} in {asked[1]} micro-batch(es) would peak at about "
                        f"{first.words()}, more than {room}: batch {cfg.optim.batch_size} in "
                        f"{cfg.optim.micro_batches} micro-batch(es) instead")
    return cfg, lines
