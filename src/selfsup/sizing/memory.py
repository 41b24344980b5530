"""Peak memory of a pre-training run, estimated before its first step.

    peak = process base + model (weights, gradients, optimiser states, teacher and averaged copies)
           + batch x activation bytes per image + the data held in memory + the DataLoader workers

The activations are measured, not modelled: the configured method is built on the CPU and runs one forward on
`PROBE_BATCH` images at the run's crops while torch's saved-tensor hooks add up what autograd keeps for
backward (each storage once; parameters excluded), in the backbone and elsewhere (heads, loss). That scales
with the batch; `ACTIVATION_OVERHEAD` covers the gradients and temporaries of backward on top, and
`--optim.micro-batches k` divides the backbone's share by k (it recomputes one part at a time). On a GPU the
model and activations go to its memory (bf16-mixed keeps activations at about `BF16_SHARE` of fp32) and the
rest to RAM. The constants were fitted to the peak RSS (process and workers) that benchmarks/sized_recipe.py
--memory measured on an AMD EPYC (family 25 model 1), 2 threads, on 2,000 256-px photos streamed with DINO on
64-px crops: batch 32, 128 and (128-px crops) 64 peaked at 1.46, 2.29 and 1.74 GiB; ACTIVATION_OVERHEAD 1.6
estimated 1.7, 3.1 and 2.2 GiB, and 1.2 keeps every estimate above its measured peak by about 10-15%.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from selfsup.config import PretrainConfig
from selfsup.sizing.data_facts import DataFacts

GIB = 1024**3
BASE_BYTES = int(0.6 * GIB)  # python, torch, kornia, lightning imported, first allocations made
WORKER_BYTES = int(0.25 * GIB)  # one DataLoader worker process's own pages (forked: the rest is shared)
ACTIVATION_OVERHEAD = 1.2  # peak of a step over the bytes saved for backward (gradients, temporaries)
BF16_SHARE = 0.6
PROBE_BATCH = 2
STATS_IMAGES = 10_000  # channel_stats converts this many images to float (views.channel_stats)
SAMPLE_IMAGES = 512  # a stream's sample for statistics (data.streaming.SAMPLE_IMAGES)
PREFETCH = 2  # batches each worker decodes ahead (data.streaming.loader)
LOAD_MARGIN = 1.15  # streamed images are decoded at this times the global crop side


@dataclass(frozen=True)
class Activations:
    """Bytes saved for backward per training image, in the backbone and in the rest of the method."""

    backbone: float
    rest: float

    def at(self, batch: int, micro_batches: int = 1) -> float:
        """Bytes of a step's activations at `batch` images split into `micro_batches` parts."""
        return batch * (self.backbone / max(micro_batches, 1) + self.rest) * ACTIVATION_OVERHEAD


@dataclass(frozen=True)
class Estimate:
    """Peak bytes of a run, by part; `device` is a GPU's share (0 on a CPU, where everything is RAM)."""

    base: int
    model: int
    activations: int
    data: int
    workers: int
    on_gpu: bool = False

    @property
    def ram(self) -> int:
        return self.base + self.data + self.workers + (0 if self.on_gpu else self.model + self.activations)

    @property
    def device(self) -> int:
        return self.model + self.activations if self.on_gpu else 0

    def words(self) -> str:
        parts = f"model {self.model / GIB:.2f}, activations {self.activations / GIB:.2f}, data {self.data / GIB:.2f}"
        if self.workers:
            parts += f", workers {self.workers / GIB:.2f}"
        where = f"GPU {self.device / GIB:.1f} GiB + RAM {self.ram / GIB:.1f} GiB" if self.on_gpu else \
            f"{self.ram / GIB:.1f} GiB"
        return f"{where} ({parts}, base {self.base / GIB:.2f} GiB)"


def model_bytes(method: torch.nn.Module, optimizer: str, eval_ema: float) -> int:
    """Weights, gradients and optimiser states of the trainable parameters (AdamW: 2 states, SGD and LARS: 1),
    the frozen ones (teachers) and an averaged copy of the backbone (--optim.eval-ema)."""
    trainable = sum(p.numel() for p in method.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in method.parameters() if not p.requires_grad)
    states = 2 if optimizer == "adamw" else 1
    averaged = sum(p.numel() for p in method.backbone.parameters()) if eval_ema else 0
    return 4 * (trainable * (2 + states) + frozen + averaged)


def measure_activations(method: torch.nn.Module, views: list[torch.Tensor]) -> Activations:
    """Bytes autograd saves for backward per image of `views` (a batch's list of views), backbone and rest."""
    params = {p.untyped_storage().data_ptr() for p in method.parameters()}
    seen: dict[int, tuple[int, bool]] = {}
    inside = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and t.device.type != "meta":
            seen.setdefault(storage.data_ptr(), (storage.nbytes(), inside[0] > 0))
        return t

    def enter(*_: object) -> None:
        inside[0] += 1

    def leave(*_: object) -> None:
        inside[0] -= 1

    hooks = [method.backbone.register_forward_pre_hook(enter), method.backbone.register_forward_hook(leave)]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            method(views, 0, diagnostics=False)
    finally:
        for h in hooks:
            h.remove()
    images = views[0].shape[0]
    backbone = sum(n for n, b in seen.values() if b) / images
    return Activations(backbone, sum(n for n, b in seen.values() if not b) / images)


def probe_method(cfg: PretrainConfig, channels: int) -> tuple[int, Activations]:
    """(model bytes, activations per image) of `cfg` (sizes resolved), from the method built on the CPU and
    one forward on PROBE_BATCH random images; the global random state is left as it was."""
    from selfsup.data.views import MultiCropViews
    from selfsup.engine.build import build_method

    state = torch.get_rng_state()
    try:
        probe = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, batch_size=PROBE_BATCH, micro_batches=1))
        method = build_method(probe, channels)
        method.setup(10, 5)
        method.train()
        side = round(cfg.views.global_size * LOAD_MARGIN)
        images = torch.randint(0, 256, (PROBE_BATCH, channels, side, side), dtype=torch.uint8)
        views = MultiCropViews(cfg.views, channels, [0.5] * channels, [0.25] * channels)(images)
        return model_bytes(method, cfg.optim.optimizer, cfg.optim.eval_ema), measure_activations(method, views)
    finally:
        torch.set_rng_state(state)


def data_bytes(cfg: PretrainConfig, facts: DataFacts, batch: int) -> tuple[int, int]:
    """(bytes of data held by the main process, bytes of the workers): in memory, every image (uint8) and the
    float copy channel_stats makes of up to STATS_IMAGES of them; streamed, the sample, the evaluation images
    and the batches the workers decode ahead."""
    c, g = facts.channels, cfg.views.global_size
    if not facts.streamed:
        images = (facts.count + facts.test_count) * c * facts.side**2
        return images + 8 * min(facts.count, STATS_IMAGES) * c * facts.side**2, 0
    load = round(g * LOAD_MARGIN) if cfg.data.load_size is None else cfg.data.load_size
    evaluation = 2 * min(facts.count, cfg.data.eval_images) * c * g**2 if cfg.run.eval_knn else 0
    sample = 9 * min(facts.count, SAMPLE_IMAGES) * c * load**2
    workers = cfg.data.workers
    ahead = max(workers, 1) * PREFETCH * batch * c * load**2
    return sample + evaluation + ahead, workers * WORKER_BYTES


def estimate(cfg: PretrainConfig, facts: DataFacts, model: int, acts: Activations, on_gpu: bool = False,
             processes: int = 1) -> Estimate:
    """The peak of `cfg` (sizes resolved) with the probed `model` bytes and activations `acts`, for one of
    `processes` processes on this machine (each holds its share of the batch and its own copy of the rest)."""
    local = cfg.optim.batch_size // max(processes, 1)
    activations = acts.at(local, cfg.optim.micro_batches) * (BF16_SHARE if on_gpu else 1.0)
    data, workers = data_bytes(cfg, facts, local)
    return Estimate(BASE_BYTES, model, int(activations), data, workers, on_gpu)
