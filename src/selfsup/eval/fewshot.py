"""`selfsup eval fewshot`: accuracy with 1% and 10% of the training labels (the semi-supervised rows of
SimCLR, BYOL and SwAV), from a linear probe on frozen features and from fine-tuning the whole network.

For each fraction, `subsets` different stratified subsets are drawn (`stratified_subset`, seeds seed,
seed + 1, ...: round(fraction x n_c), at least 1, images of each class c); each row reports the mean and the
sample standard deviation over them. The linear probe chooses its learning rate on a validation split of the
subset itself (never on test); fine-tuning uses `selfsup.eval.finetune.finetune` (MAE's recipe) with the
options below. The test split is always the full one.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import torch

from selfsup.eval.context import EvalContext
from selfsup.eval.linear import DEFAULT_EPOCHS, LinearOptions, probe
from selfsup.eval.subsets import stratified_subset
from selfsup.options import opt


@dataclass
class FewshotOptions:
    """Options of `selfsup eval fewshot`."""

    fractions: list[float] = opt([0.01, 0.1], "Shares of the training labels, drawn per class. SimCLR/BYOL report "
                                 "1% and 10% of ImageNet (13 and 128 images per class); 1% of Fashion-MNIST is "
                                 "60 per class.", paper=[0.01, 0.1], above=0, high=1)
    subsets: int = opt(3, "Different subsets per fraction (seeds seed, seed+1, ...): the row is their mean and "
                       "standard deviation. More subsets narrow the spread of the mean; 1 gives no std.", low=1)
    lrs: list[float] | None = opt(None, "Linear-probe learning-rate sweep (see `selfsup eval linear --help`), "
                                  "chosen on a validation split of each subset.", above=0)
    epochs: int = opt(DEFAULT_EPOCHS, "Linear-probe epochs. A 1% subset fills one batch, so each epoch is one "
                      "step: keep at least 100.", paper=100, low=1)
    finetune: bool = opt(True, "Also fine-tune the whole network on each subset (MAE's recipe, "
                         "selfsup.eval.finetune): minutes per subset on a CPU. --no-finetune keeps the linear "
                         "rows only.")
    finetune_epochs: float = opt(30.0, "Fine-tuning epochs per subset. A 1% subset is a few batches per epoch, so "
                                 "it needs more epochs than full fine-tuning; raise until test accuracy stops "
                                 "improving.", above=0)
    finetune_minutes: float | None = opt(None, "Optional wall-clock budget per fine-tuning run (the schedule is "
                                         "shortened to fit).", above=0)


def fraction_label(fraction: float) -> str:
    """0.01 -> '1pct', 0.1 -> '10pct', 0.005 -> '0.5pct' (used in the result names)."""
    return f"{fraction * 100:g}pct"


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def features_only(opts: FewshotOptions) -> bool:
    """Whether fewshot reads only frozen features with `opts` (no fine-tuning): its image folder may stream."""
    return not opts.finetune


def _finetune_top1(ctx: EvalContext, opts: FewshotOptions, idx: torch.Tensor, seed: int) -> float:
    from selfsup.eval.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(epochs=opts.finetune_epochs, minutes=opts.finetune_minutes)
    r = finetune(ctx.backbone, ctx.prepare, ctx.labelled("train"), ctx.labelled("test"), cfg, ctx.device,
                 train_idx=idx, seed=seed)
    return r["top1"]


def fewshot_protocol(ctx: EvalContext) -> dict[str, Any]:
    """"linear_1pct_top1_mean", "linear_1pct_top1_std", ... and, when fine-tuning, "finetune_1pct_top1_mean",
    ...; the per-subset values and subset sizes go to the settings."""
    opts = ctx.options or FewshotOptions()
    do_finetune = opts.finetune and ctx.spec is not None  # raw pixels have no network to fine-tune
    train_x, train_y = ctx.features("train")
    test_x, test_y = ctx.features("test")
    train_x, test_x = train_x.to(ctx.device), test_x.to(ctx.device)
    linear = LinearOptions(lrs=opts.lrs, epochs=opts.epochs)
    numbers: dict[str, Any] = {}
    settings: dict[str, Any] = {"finetune": do_finetune}
    for fraction in opts.fractions:
        name = fraction_label(fraction)
        rows: dict[str, list[float]] = {"linear": [], "finetune": []}
        sizes, lrs = [], []
        for i in range(opts.subsets):
            idx = stratified_subset(train_y, fraction, ctx.seed + i)  # (m,)
            r = probe(linear, train_x[idx.to(train_x.device)], train_y[idx], test_x, test_y, ctx.num_classes,
                      ctx.seed + i)
            rows["linear"].append(r["top1"])
            sizes.append(len(idx))
            lrs.append(r["lr"])
            if do_finetune:
                rows["finetune"].append(_finetune_top1(ctx, opts, idx, ctx.seed + i))
        for kind, values in rows.items():
            if values:
                numbers[f"{kind}_{name}_top1_mean"], numbers[f"{kind}_{name}_top1_std"] = mean_std(values)
                settings[f"{kind}_{name}_top1"] = values
        settings[f"n_labelled_{name}"] = sizes
        settings[f"linear_{name}_lr"] = lrs
    return {**numbers, "settings": settings}


__all__ = ["FewshotOptions", "features_only", "fewshot_protocol", "fraction_label", "mean_std"]
