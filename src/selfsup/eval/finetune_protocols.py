"""`selfsup eval finetune | supervised | pseudolabel`: the protocols that train the whole network with labels.

- finetune: the run's backbone + a linear head, fine-tuned on all training labels (`finetune.py`).
- supervised: the same architecture from random initialisation on all (or a stratified fraction of) the
  labels, same recipe and budget (`supervised.py`); its backbone is saved as a run directory so that the
  frozen-feature protocols can compare it with pre-trained runs (`--checkpoint RUN/supervised-FRACTION`).
- pseudolabel: fine-tune on a labelled fraction, pseudo-label the rest, fine-tune again (`pseudolabel.py`).

Each returns flat numbers (accuracies in percent, counts) plus a "settings" dict of what the run decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfsup.eval.context import EvalContext, EvalError
from selfsup.eval.finetune import FinetuneConfig, finetune
from selfsup.eval.pseudolabel import DEFAULT_THRESHOLD, pseudolabel
from selfsup.eval.supervised import SCRATCH_HEAD_INIT_STD, supervised
from selfsup.options import opt


@dataclass
class SupervisedOptions(FinetuneConfig):
    """Options of `selfsup eval supervised`: the fine-tuning recipe plus the label fraction."""

    layer_decay: float | None = opt(None, "Not used: random weights train without layer decay (1.0), as "
                                    "layer decay only protects pre-trained lower layers.", paper=1.0, above=0, high=1)
    head_init_std: float = opt(SCRATCH_HEAD_INIT_STD, "Not used: random initialisation uses timm's / DeiT's "
                               f"{SCRATCH_HEAD_INIT_STD} for the head.", paper=SCRATCH_HEAD_INIT_STD, low=0)
    fraction: float = opt(1.0, "Share of each class's training labels (stratified, seeded by --seed). 0.01 and "
                          "0.1 are the semi-supervised rows of SimCLR / BYOL.", paper=1.0, above=0, high=1)
    out: str | None = opt(None, "Run directory for the trained backbone (backbone.safetensors + config.yaml), "
                          "evaluable with --checkpoint like any run. Default: RUN/supervised-FRACTION.")


@dataclass
class PseudolabelOptions(FinetuneConfig):
    """Options of `selfsup eval pseudolabel`: the fine-tuning recipe (label smoothing is turned off) plus the
    labelled fraction and the confidence threshold."""

    epochs: float = opt(30.0, "Fine-tuning epochs of each stage. The labelled fraction is a few batches per "
                        "epoch, so it needs more epochs than full fine-tuning (as fewshot's --finetune-epochs).",
                        paper=100, above=0)
    smoothing: float = opt(0.0, "Not used: both stages train without label smoothing, which would cap the "
                           "confidence a model learns at 1 - eps + eps / K (0.91 for eps 0.1 and 10 classes), "
                           "below the threshold.", paper=0.0, low=0, below=1)
    fraction: float = opt(0.1, "Share of each class's training labels kept (stratified, seeded by --seed); the "
                          "rest are treated as unlabelled.", paper=0.1, above=0, high=1)
    threshold: float = opt(DEFAULT_THRESHOLD, "Softmax confidence a prediction needs to become a pseudo-label. "
                           "Lower it (0.8-0.9) when few predictions pass; the result reports how many were "
                           "added and how many of them were right.", paper=DEFAULT_THRESHOLD, above=0, high=1)


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise EvalError(f"--fraction must be in (0, 1], got {fraction}")


def _trainable(ctx: EvalContext) -> None:
    if ctx.spec is None:
        raise EvalError("this protocol trains the backbone: it needs a run (--checkpoint), not raw pixels")


def finetune_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Fine-tuned top-1/top-5 on test after training on every labelled training image."""
    _trainable(ctx)
    return finetune(ctx.backbone, ctx.prepare, ctx.labelled("train"), ctx.labelled("test"),
                    ctx.options or FinetuneConfig(), ctx.device, seed=ctx.seed)


def supervised_dir(ctx: EvalContext, opts: SupervisedOptions) -> Path:
    return Path(opts.out) if opts.out else ctx.run_dir / f"supervised-{opts.fraction:g}"


def supervised_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Top-1/top-5 of the run's architecture trained from scratch; its backbone is saved as a run directory."""
    _trainable(ctx)
    opts = ctx.options or SupervisedOptions()
    _check_fraction(opts.fraction)
    out = supervised_dir(ctx, opts)
    result = supervised(ctx.spec, ctx.labelled("train"), ctx.labelled("test"), opts, opts.fraction, ctx.device,
                        ctx.seed, out=out, data=ctx.data)
    result["settings"] = {**result["settings"], "fraction": opts.fraction, "init": "random", "run": str(out)}
    return {k: v for k, v in result.items() if k not in ("init", "run")}


def pseudolabel_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Top-1 after self-training next to the labelled-only top-1, with the pseudo-label count and accuracy."""
    _trainable(ctx)
    opts = ctx.options or PseudolabelOptions()
    _check_fraction(opts.fraction)
    r = pseudolabel(ctx.backbone, ctx.prepare, ctx.labelled("train"), ctx.labelled("test"), opts, opts.fraction,
                    opts.threshold, ctx.device, ctx.seed)
    first, second = r.pop("labelled_only"), r.pop("retrained")
    r.pop("threshold")
    r["settings"] = {**first["settings"], "threshold": opts.threshold, "fraction": opts.fraction,
                     "labelled_only_steps": first["steps"], "retrained_steps": second["steps"] if second else 0,
                     "minutes": first["minutes"] + (second["minutes"] if second else 0.0)}
    r["top5"] = (second or first)["top5"]
    return r


__all__ = ["PseudolabelOptions", "SupervisedOptions", "finetune_protocol", "pseudolabel_protocol",
           "supervised_protocol"]
