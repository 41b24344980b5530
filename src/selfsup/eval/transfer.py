"""`selfsup eval transfer`: features pre-trained on one dataset, evaluated on another (e.g. Fashion-MNIST ->
digits, digits -> Fashion-MNIST, Fashion-MNIST -> CIFAR-10), by k-NN and a linear probe on frozen features:
the linear-evaluation transfer of SimCLR (Sec. 6) and BYOL (Sec. 4.2), with DINO's k-NN alongside.

The evaluation data is brought to the backbone's input first (`adapt.py`: grayscale <-> RGB, resized to the
pre-training side); the record names both datasets and the adaptation made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from selfsup.eval.context import EvalContext
from selfsup.eval.knn import KnnOptions, knn_protocol
from selfsup.eval.linear import DEFAULT_EPOCHS, LinearOptions, linear_protocol
from selfsup.options import opt


@dataclass
class TransferOptions:
    """Options of `selfsup eval transfer` (the k-NN and linear protocols' own, see their --help)."""

    k: list[int] = opt([20], "k-NN neighbours; several values are evaluated on the same features.", paper=[20], low=1)
    temperature: float = opt(0.07, "k-NN vote temperature.", paper=0.07, above=0)
    lrs: list[float] | None = opt(None, "Linear-probe learning-rate sweep (chosen on a validation split of the "
                                  "evaluation data's train split).", above=0)
    epochs: int = opt(DEFAULT_EPOCHS, "Linear-probe epochs.", paper=100, low=1)


def _prefixed(prefix: str, result: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}_{k}": v for k, v in result.items() if k != "settings"}


def transfer_protocol(ctx: EvalContext) -> dict[str, Any]:
    """"knn_top1", "knn_top5", "linear_top1", "linear_top5" on the evaluation data's test split."""
    opts = ctx.options or TransferOptions()
    knn = knn_protocol(ctx.with_options(KnnOptions(k=opts.k, temperature=opts.temperature)))
    linear = linear_protocol(ctx.with_options(LinearOptions(lrs=opts.lrs, epochs=opts.epochs)))
    settings = {"pretrain_data": ctx.pretrain.get("data"), "eval_data": ctx.data, "adaptation": ctx.adaptation,
                "knn": knn["settings"], "linear": linear["settings"]}
    return {**_prefixed("knn", knn), **_prefixed("linear", linear), "settings": settings}


__all__ = ["TransferOptions", "transfer_protocol"]
