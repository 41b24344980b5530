"""Linear probe on frozen, cached features, with a learning-rate sweep chosen on a validation split.

What it is: MAE's linear probe (`main_linprobe.py`, He et al., 2022) on the backbone's output features (a
ViT's `--feature`, by default the run's --backbone.pool, cls unless set; a ResNet's average-pooled
features), computed once without augmentation: a BatchNorm1d without affine parameters (a per-dimension
standardisation learned from the training features) followed by one linear layer whose weights start from
N(0, 0.01) and biases from 0, trained with SGD (momentum 0.9, no weight decay, cosine decay to 0, lr =
base_lr x batch / 256).

What it is not: DINO's `eval_linear.py`, which trains a linear layer without BatchNorm on the CLS tokens
of the last 4 blocks (ViT-S; the last block's CLS concatenated with the average patch token for ViT-B), on
randomly cropped and flipped images every epoch. `--feature cls-last4` (ViT-S) or `--feature cls+mean`
(ViT-B) gives this probe DINO's features, not its training. Numbers from this probe are therefore not
DINO's linear numbers; they are cheaper (one epoch over 60,000 cached features takes a fraction of a
second, see `feature_cache.py`) and usually a little lower than a probe trained on augmented images.

The sweep: a stratified 10% of the training set is held out (`validation_split`), one probe per base
learning rate is trained on the other 90% (all probes in the same pass over the data: they share the
batches and the BatchNorm, each has its own head and learning rate), the rate with the best validation
top-1 is kept (ties go to the first in the list), and a probe with that rate is trained again on the whole
training set and reported on test. The test split is never used to choose anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.eval.context import EvalContext
from selfsup.eval.subsets import validation_split
from selfsup.options import opt

DEFAULT_LRS = {  # base learning rates at batch 256, per optimiser (see linear_probe's docstring)
    "sgd": (0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
    "adamw": (1e-3, 3e-3, 1e-2, 3e-2, 0.1),
}
DEFAULT_EPOCHS = 100  # DINO eval_linear.py: 100; MAE main_linprobe.py: 90
DEFAULT_BATCH_SIZE = 1024  # DINO eval_linear.py: 1024 in total; MAE: 16384
HEAD_INIT_STD = 0.01  # DINO: normal_(std=0.01); MAE: trunc_normal_(std=0.01)
MOMENTUM = 0.9
SMALL_STEP_MACS = 2**26  # CPU steps with fewer multiply-adds than this run on one thread (see _cpu_threads)


class LinearProbes(nn.Module):
    """One shared BatchNorm1d(affine=False) and `n` linear heads: (B, D) -> (n, num_classes, B) logits.

    The logits are class-major: PyTorch's CPU cross-entropy over dim 1 of (n, C, B) is about 8x faster
    than over the last dim of (n * B, C) when C is small (10 classes)."""

    def __init__(self, dim: int, num_classes: int, n: int, seed: int = 0) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False)
        self.heads = nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(n))
        for head in self.heads:  # every head starts from the same weights: the sweep compares rates only
            nn.init.normal_(head.weight, std=HEAD_INIT_STD, generator=torch.Generator().manual_seed(seed))
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bn(x)  # (B, D) standardised
        weight = torch.stack([h.weight for h in self.heads])  # (n, C, D)
        bias = torch.stack([h.bias for h in self.heads])  # (n, C)
        return torch.matmul(weight, z.T) + bias[..., None]  # (n, C, B)


def _optimizer(probes: LinearProbes, lrs: Sequence[float], name: str, weight_decay: float) -> torch.optim.Optimizer:
    groups = [{"params": list(h.parameters()), "lr": lr, "base_lr": lr} for h, lr in zip(probes.heads, lrs,
                                                                                           strict=True)]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lrs[0], momentum=MOMENTUM, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lrs[0], weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {name!r}")


@contextmanager
def _cpu_threads(x: torch.Tensor, macs_per_step: int) -> Iterator[None]:
    """One torch thread for small CPU steps: a 1024 x 128 -> 10 step takes ~1 ms on one thread and
    5-10x longer with two threads on a busy 2-core machine (synchronisation, not arithmetic)."""
    threads = torch.get_num_threads()
    if x.device.type == "cpu" and macs_per_step < SMALL_STEP_MACS:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_probes(x: torch.Tensor, y: torch.Tensor, num_classes: int, base_lrs: Sequence[float],
                 epochs: int = DEFAULT_EPOCHS, batch_size: int = DEFAULT_BATCH_SIZE, optimizer: str = "sgd",
                 weight_decay: float = 0.0, seed: int = 0) -> LinearProbes:
    """Train one probe per base learning rate on (n, D) features and (n,) labels; returns them in eval mode.

    The batch is min(batch_size, n); each epoch is a fresh permutation with the incomplete last batch
    dropped (BatchNorm needs >= 2 rows). The learning rate of head i is base_lrs[i] x batch / 256 with a
    per-step cosine decay to 0.
    """
    if len(x) < 2:
        raise ValueError(f"a linear probe needs at least 2 training samples, got {len(x)}")
    batch = min(batch_size, len(x))
    steps_per_epoch = len(x) // batch
    total = max(1, epochs * steps_per_epoch)
    probes = LinearProbes(x.shape[1], num_classes, len(base_lrs), seed).to(x.device)
    opt = _optimizer(probes, [lr * batch / 256 for lr in base_lrs], optimizer, weight_decay)
    gen = torch.Generator().manual_seed(seed)
    probes.train()
    step = 0
    with _cpu_threads(x, batch * x.shape[1] * num_classes * len(base_lrs)):
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen).to(x.device)
            for i in range(steps_per_epoch):
                idx = perm[i * batch:(i + 1) * batch]
                scale = 0.5 * (1 + math.cos(math.pi * step / total))  # cosine decay to 0
                _step(probes, opt, x.index_select(0, idx), y.index_select(0, idx), scale)
                step += 1
    return probes.eval()


def _step(probes: LinearProbes, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, scale: float) -> None:
    for group in opt.param_groups:
        group["lr"] = group["base_lr"] * scale
    logits = probes(x)  # (n, C, B)
    # the sum over heads of each head's mean cross-entropy: every head gets its own gradient
    loss = F.cross_entropy(logits, y.expand(len(logits), -1)) * len(logits)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@torch.no_grad()
def probe_accuracy(probes: LinearProbes, x: torch.Tensor, y: torch.Tensor,
                   batch: int = 65536) -> list[dict[str, float | None]]:
    """Top-1 and (with >= 5 classes) top-5 accuracy in percent of each head on (n, D) features, (n,) labels."""
    logits = torch.cat([probes(x[i:i + batch]) for i in range(0, len(x), batch)], dim=2)  # (heads, C, n)
    out = []
    for lg in logits:
        top1 = 100.0 * int((lg.argmax(dim=0) == y).sum()) / len(y)
        top5 = None
        if lg.shape[0] >= 5:
            top5 = 100.0 * int((lg.topk(5, dim=0).indices == y).any(dim=0).sum()) / len(y)
        out.append({"top1": top1, "top5": top5})
    return out


def _check(x: torch.Tensor, y: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"{name}_x must be a 2-D (n, dim) float tensor, got {tuple(x.shape)} {x.dtype}")
    if y.ndim != 1 or y.is_floating_point() or len(y) != len(x):
        raise ValueError(f"{name}_y must be 1-D integer labels, one per row of {name}_x; got {tuple(y.shape)} "
                         f"{y.dtype} for {len(x)} rows")
    return x.float(), y.long().to(x.device)


def choose_lr(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, lrs: Sequence[float],
              val_fraction: float, seed: int, **train_kw) -> tuple[float, dict[str, float], int]:
    """(chosen base lr, {lr: validation top-1}, validation size) from probes trained on the train part of a
    stratified split. Without any validation sample (every class has one image) the middle rate is kept."""
    tr, va = validation_split(train_y.cpu(), val_fraction, seed)
    if len(lrs) == 1 or len(va) == 0:
        return lrs[len(lrs) // 2], {}, len(va)
    probes = train_probes(train_x[tr], train_y[tr], num_classes, lrs, seed=seed, **train_kw)
    accs = [a["top1"] for a in probe_accuracy(probes, train_x[va], train_y[va])]
    best = max(range(len(lrs)), key=lambda i: (accs[i], -i))  # ties: the first in the list
    return lrs[best], {f"{lr:g}": acc for lr, acc in zip(lrs, accs, strict=True)}, len(va)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 num_classes: int | None = None, lrs: Sequence[float] | None = None, epochs: int = DEFAULT_EPOCHS,
                 batch_size: int = DEFAULT_BATCH_SIZE, optimizer: str = "sgd", weight_decay: float = 0.0,
                 val_fraction: float = 0.1, seed: int = 0) -> dict:
    """Linear-probe top-1 of frozen features: (n, D) train, (n,) labels, (m, D) test, (m,) labels.

    `lrs` are base learning rates at batch 256 (default DEFAULT_LRS[optimizer]: 0.003 to 1 for SGD on the
    standardised features, 1e-3 to 0.1 for AdamW); the best on a stratified `val_fraction` of train is
    retrained on all of train. Runs on the features' device.

    Returns {"top1", "top5" (None under 5 classes), "lr" (chosen base lr), "val_top1" ({lr: %}), "n_train",
    "n_val", "n_test", "seconds", "settings" (lrs, epochs, batch_size, optimizer, weight_decay,
    val_fraction, seed)}; accuracies in percent.
    """
    start = time.perf_counter()
    train_x, train_y = _check(train_x, train_y, "train")
    test_x, test_y = _check(test_x, test_y, "test")
    if test_x.shape[1] != train_x.shape[1]:
        raise ValueError(f"test_x has dim {test_x.shape[1]} but train_x has dim {train_x.shape[1]}")
    k = num_classes or int(max(train_y.max(), test_y.max())) + 1
    if optimizer not in DEFAULT_LRS:
        raise ValueError(f"optimizer must be one of {', '.join(DEFAULT_LRS)}, got {optimizer!r}")
    lrs = tuple(lrs or DEFAULT_LRS[optimizer])
    if not lrs or min(lrs) <= 0:
        raise ValueError(f"lrs must be positive learning rates, got {lrs!r}")
    kw = {"epochs": epochs, "batch_size": batch_size, "optimizer": optimizer, "weight_decay": weight_decay}
    lr, val_top1, n_val = choose_lr(train_x, train_y, k, lrs, val_fraction, seed, **kw)
    final = train_probes(train_x, train_y, k, [lr], seed=seed, **kw)
    scores = probe_accuracy(final, test_x, test_y)[0]
    settings = {"lrs": list(lrs), **kw, "val_fraction": val_fraction, "seed": seed}
    return {**scores, "lr": lr, "val_top1": val_top1, "n_train": len(train_x), "n_val": n_val,
            "n_test": len(test_x), "seconds": round(time.perf_counter() - start, 2), "settings": settings}


@dataclass
class LinearOptions:
    """Options of `selfsup eval linear`."""

    lrs: list[float] | None = opt(None, "Base learning rates (at batch 256) of the sweep; the best on the "
                                  f"validation split is kept. Default: {list(DEFAULT_LRS['sgd'])} for SGD, "
                                  f"{list(DEFAULT_LRS['adamw'])} for AdamW. Widen the range when the chosen value "
                                  "is at either end.", paper="DINO: 0.001 without BN; MAE: LARS 0.1", above=0)
    epochs: int = opt(DEFAULT_EPOCHS, "Epochs over the cached features (each takes well under a second for "
                      "60,000 x 128 features). Fewer (30) cost little accuracy; few-shot subsets keep 100.",
                      paper=100, low=1)
    batch_size: int = opt(DEFAULT_BATCH_SIZE, "Batch size (capped at the training-set size); the learning rate "
                          "is scaled by batch / 256.", paper=1024, low=2)
    optimizer: str = opt("sgd", "sgd (momentum 0.9, DINO) or adamw. Both reach about the same accuracy when "
                         "the sweep brackets their best rate.", paper="sgd", choices=tuple(DEFAULT_LRS))
    weight_decay: float = opt(0.0, "Weight decay of the linear layer. DINO and MAE use none; 1e-4 can help "
                              "with few labels and high-dimensional features.", paper=0.0, low=0)
    val_fraction: float = opt(0.1, "Share of each training class held out to choose the learning rate "
                              "(never the test split). 0.1 leaves 90% for the sweep; the chosen rate is then "
                              "retrained on all of train.", above=0, below=1)


def probe(opts: LinearOptions, train_x, train_y, test_x, test_y, num_classes: int, seed: int) -> dict[str, Any]:
    """`linear_probe` with the options' settings: features (n, D), (m, D) and labels (n,), (m,)."""
    return linear_probe(train_x, train_y, test_x, test_y, num_classes, lrs=opts.lrs, epochs=opts.epochs,
                        batch_size=opts.batch_size, optimizer=opts.optimizer, weight_decay=opts.weight_decay,
                        val_fraction=opts.val_fraction, seed=seed)


def linear_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Linear-probe top-1/top-5 on test; the chosen lr and the validation top-1 of each go to the settings."""
    opts = ctx.options or LinearOptions()  # checked against its declarations (run_protocol)
    train_x, train_y = ctx.features("train")
    test_x, test_y = ctx.features("test")
    r = probe(opts, train_x.to(ctx.device), train_y, test_x.to(ctx.device), test_y, ctx.num_classes, ctx.seed)
    settings = {"lr": r["lr"], "val_top1": r["val_top1"], "lrs": r["settings"]["lrs"], "n_train": r["n_train"],
                "n_val": r["n_val"], "n_test": r["n_test"]}
    return {"top1": r["top1"], "top5": r["top5"], "settings": settings}


__all__ = ["DEFAULT_LRS", "LinearOptions", "LinearProbes", "choose_lr", "linear_probe", "linear_protocol", "probe",
           "probe_accuracy", "train_probes"]
