"""`selfsup eval linear`: a linear classifier on the frozen (cached) features of the train split, learning
rate chosen on a validation split carved from train, reported on test (see `linear.py` for the recipe:
MAE main_linprobe.py's BatchNorm-without-affine probe, DINO eval_linear.py's SGD + cosine schedule)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from selfsup.eval.context import EvalContext, EvalError
from selfsup.eval.linear import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LRS, linear_probe
from selfsup.options import opt


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


def check_linear_options(opts: LinearOptions) -> None:
    if opts.lrs is not None and (not opts.lrs or min(opts.lrs) <= 0):
        raise EvalError(f"--lrs must list positive learning rates, got {opts.lrs}")
    if opts.optimizer not in DEFAULT_LRS:
        raise EvalError(f"--optimizer must be one of {', '.join(DEFAULT_LRS)}, got {opts.optimizer!r}")
    if opts.epochs < 1 or opts.batch_size < 2:
        raise EvalError(f"--epochs must be >= 1 and --batch-size >= 2, got {opts.epochs} and {opts.batch_size}")
    if not 0 < opts.val_fraction < 1:
        raise EvalError(f"--val-fraction must be in (0, 1), got {opts.val_fraction}")


def probe(opts: LinearOptions, train_x, train_y, test_x, test_y, num_classes: int, seed: int) -> dict[str, Any]:
    """`linear_probe` with the options' settings: features (n, D), (m, D) and labels (n,), (m,)."""
    return linear_probe(train_x, train_y, test_x, test_y, num_classes, lrs=opts.lrs, epochs=opts.epochs,
                        batch_size=opts.batch_size, optimizer=opts.optimizer, weight_decay=opts.weight_decay,
                        val_fraction=opts.val_fraction, seed=seed)


def linear_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Linear-probe top-1/top-5 on test; the chosen lr and the validation top-1 of each go to the settings."""
    opts = ctx.options or LinearOptions()
    check_linear_options(opts)
    train_x, train_y = ctx.features("train")
    test_x, test_y = ctx.features("test")
    r = probe(opts, train_x.to(ctx.device), train_y, test_x.to(ctx.device), test_y, ctx.num_classes, ctx.seed)
    settings = {"lr": r["lr"], "val_top1": r["val_top1"], "lrs": r["settings"]["lrs"], "n_train": r["n_train"],
                "n_val": r["n_val"], "n_test": r["n_test"]}
    return {"top1": r["top1"], "top5": r["top5"], "settings": settings}


__all__ = ["LinearOptions", "check_linear_options", "linear_protocol", "probe"]
